package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestH10BadPrefixIsUsageError: a key prefix with "..", "." or empty
// elements (from --prefix or the s3:// URL's path) is a configuration error
// (exit 2) of every command, named before any key is written or listed;
// it was exit 1 with one "invalid key" failure per segment.
func TestH10BadPrefixIsUsageError(t *testing.T) {
	logDir := t.TempDir()
	os.WriteFile(filepath.Join(logDir, "meta.properties"), []byte("version=1\nnode.id=1\ncluster.id=h10h10h10h10h10h10h10A\n"), 0o644)
	store := "file://" + t.TempDir()
	for _, loc := range [][]string{
		{"--bucket", store, "--prefix", "../escape"},
		{"--bucket", store, "--prefix", "a//b"},
		{"--bucket", store, "--prefix", "a/./b"},
		{"--bucket", "s3://h10-bucket/a/../b", "--s3-endpoint", "127.0.0.1:9", "--s3-insecure"},
	} {
		for _, cmd := range [][]string{
			{"ls"},
			{"verify", "--scrub"},
			{"restore", "-t", t.TempDir(), "--dry-run"},
			{"agent", "--once", "--log-dirs", logDir, "--state-dir", t.TempDir(), "--listen", ""},
		} {
			args := append(append([]string{}, cmd...), loc...)
			out, errOut, code := h6Exec(t, args...)
			if code != exitUsage || !strings.Contains(errOut, "prefix") {
				t.Errorf("segvault %s: exit %d, want 2 naming the prefix\n%s\n%s", strings.Join(args, " "), code, out, errOut)
			}
		}
	}
}
