package main

import (
	"bytes"
	"testing"
)

// TestH10ExitErrorWithoutMessage: verify returns an exit code without a
// message once it has printed its findings; that error must not panic when
// printed. It did on SIGINT during `verify --scrub` (run prints the error of
// an interrupted command), so the operator got a Go stack trace and exit 2
// instead of "interrupted" and 130.
func TestH10ExitErrorWithoutMessage(t *testing.T) {
	for _, code := range []int{exitFailure, exitUsage} {
		e := &exitError{code: code}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("exitError{code: %d}.Error() panics: %v", code, r)
				}
			}()
			if msg := e.Error(); msg != "" {
				t.Errorf("exitError{code: %d}.Error() = %q, want empty", code, msg)
			}
		}()
	}
	// And through run: a verify that finds corruption exits 1 with its report.
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	if code := run([]string{"segvault", "verify", dir}, &out, &errOut); code != exitFailure {
		t.Errorf("verify of an empty dir: exit %d\n%s", code, errOut.String())
	}
}
