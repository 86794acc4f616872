package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestH6LsTableFormat: the ls table of a real archived broker fits a
// terminal (no row wider than 120 columns), an empty GAPS cell reads "-".
func TestH6LsTableFormat(t *testing.T) {
	tmp := t.TempDir()
	logs := filepath.Join(tmp, "kafka-logs")
	copyTree(t, fixture(t, biggerBrain), logs)
	bucket := "file://" + filepath.Join(tmp, "bucket")
	out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--bucket", bucket, "--state-dir", filepath.Join(tmp, "state"))
	if code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = runSegvault(t, "ls", "--bucket", bucket)
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("ls:\n%s", out)
	}
	for _, l := range lines {
		if len(l) > 120 {
			t.Errorf("row of %d columns (> 120): %q", len(l), l)
		}
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if last := f[len(f)-1]; !strings.Contains(last, "..") && last != "-" {
			t.Errorf("GAPS cell of a partition without gaps is not \"-\": %q", l)
		}
	}
	if !strings.Contains(lines[1], "lsx1-0") || !strings.HasSuffix(lines[1], " -") {
		t.Errorf("lsx1-0 row: %q", lines[1])
	}
	// --wide still shows the topic id.
	out, _, _ = runSegvault(t, "ls", "--wide", "--bucket", bucket)
	if !strings.Contains(out, "TOPIC ID") || !strings.Contains(out, "nigi0dJNRASJVYh5eRn0Vg") {
		t.Errorf("ls --wide:\n%s", out)
	}
}

// TestH6LsEmptySegmentOffsets: a partition whose archived segments hold no
// record (an empty segment at N: first N, last N-1) does not read "0..-1".
func TestH6LsEmptySegmentOffsets(t *testing.T) {
	for _, tc := range []struct {
		p    lsPartition
		want string
	}{
		{lsPartition{Segments: 1, First: 0, Last: -1}, "empty at 0"},
		{lsPartition{Segments: 1, First: 500, Last: 499}, "empty at 500"},
		{lsPartition{Segments: 2, First: 0, Last: 13}, "0..13"},
		{lsPartition{Segments: 0, First: -1, Last: -1}, "-"},
	} {
		if got := lsOffsets(tc.p); got != tc.want {
			t.Errorf("lsOffsets(%d..%d, %d segments) = %q, want %q", tc.p.First, tc.p.Last, tc.p.Segments, got, tc.want)
		}
	}
}
