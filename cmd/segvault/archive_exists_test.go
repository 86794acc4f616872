package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadersRefuseMissingLocalArchive: ls, restore and verify --scrub on a
// file:// archive that does not exist exit 2 naming it, and do not create it
// (opening a local store creates its directory, so a mistyped path used to
// read as an empty archive).
func TestReadersRefuseMissingLocalArchive(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-archive")
	target := filepath.Join(t.TempDir(), "target")
	for _, args := range [][]string{
		{"segvault", "ls", "--bucket", "file://" + missing},
		{"segvault", "restore", "--bucket", "file://" + missing, "--broker", "1", "--whole-broker", "--target", target},
		{"segvault", "verify", "--scrub", "--bucket", "file://" + missing},
	} {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), missing) {
			t.Errorf("%s: exit %d, want %d naming %s\n%s%s", strings.Join(args[1:3], " "), code, exitUsage, missing, out.String(), errOut.String())
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("%s created the archive dir %s", args[1], missing)
		}
	}
}
