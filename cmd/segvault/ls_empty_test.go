package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestLsEmptyArchiveIsNotSuccess: ls of an existing but empty archive (a
// mistyped --prefix looks exactly like this) exits 1 saying so, not 0 with
// an empty table; --allow-empty accepts it.
func TestLsEmptyArchiveIsNotSuccess(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"segvault", "ls", "--bucket", "file://" + dir, "--prefix", "typo"}, &out, &errOut); code != exitFailure ||
		!strings.Contains(errOut.String(), "holds nothing") {
		t.Fatalf("ls of an empty archive: exit %d, want %d\n%s%s", code, exitFailure, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"segvault", "ls", "--allow-empty", "--bucket", "file://" + dir}, &out, &errOut); code != exitOK {
		t.Fatalf("ls --allow-empty of an empty archive: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
