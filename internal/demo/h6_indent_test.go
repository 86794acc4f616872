package main

import (
	"bytes"
	"testing"
)

// TestH6IndentKeepsLinesWhole: the child's table reaches the demo in pieces
// (tabwriter writes cell by cell, a pipe read ends anywhere): a line split
// across writes must come out as one indented line.
func TestH6IndentKeepsLinesWhole(t *testing.T) {
	var out bytes.Buffer
	w := &indent{w: &out}
	for _, p := range []string{"CLUSTER  PART", "ITION\nc1  ", "orders-0\n", "last"} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if got, want := out.String(), "      CLUSTER  PARTITION\n      c1  orders-0\n      last\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
