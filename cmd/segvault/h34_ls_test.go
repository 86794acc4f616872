package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// ls shows which brokers archived each offset range: two brokers' agents
// archive the same real partition; both are named for its whole range, in
// the JSON field archived_by and in the ARCHIVED BY column.
func TestH34LsArchivedBy(t *testing.T) {
	tmp := t.TempDir()
	bucket := "file://" + filepath.Join(tmp, "bucket")
	for _, id := range []string{"0", "1"} {
		logs := filepath.Join(tmp, "logs"+id)
		copyTree(t, fixture(t, biggerBrain), logs)
		meta := filepath.Join(logs, "meta.properties")
		data, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(meta, []byte(strings.Replace(string(data), "broker.id=0", "broker.id="+id, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
			"--log-dirs", logs, "--bucket", bucket, "--state-dir", filepath.Join(tmp, "state"+id))
		if code != 0 {
			t.Fatalf("agent --once (broker %s): exit %d\n%s\n%s", id, code, out, errOut)
		}
	}
	out, errOut, code := runSegvault(t, "ls", "--json", "--bucket", bucket)
	if code != 0 {
		t.Fatalf("ls --json: exit %d\n%s\n%s", code, out, errOut)
	}
	var parts []lsPartition
	if err := json.Unmarshal([]byte(out), &parts); err != nil || len(parts) != 1 {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	if want := []lsArchived{{First: 0, Last: 13, Brokers: []int32{0, 1}}}; !reflect.DeepEqual(parts[0].ArchivedBy, want) {
		t.Fatalf("archived_by %+v, want %+v", parts[0].ArchivedBy, want)
	}
	out, _, _ = runSegvault(t, "ls", "--bucket", bucket)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "ARCHIVED BY") || !strings.Contains(lines[1], " 0+1 ") {
		t.Fatalf("ls:\n%s", out)
	}
}

// Ranges held by different brokers are split where the set changes.
func TestH34LsArchivedByRanges(t *testing.T) {
	got := lsArchivedBy([]lsOwnerRange{{0, 100, 2}, {100, 200, 2}, {150, 300, 1}, {0, 100, 3}, {400, 500, 2}})
	want := []lsArchived{{0, 99, []int32{2, 3}}, {100, 149, []int32{2}}, {150, 199, []int32{1, 2}}, {200, 299, []int32{1}}, {400, 499, []int32{2}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if s := lsArchivedText(got); s != "2+3@0,2@100,1+2@150,1@200,2@400" {
		t.Fatalf("text %q", s)
	}
	if s := lsArchivedText(got[:1]); s != "2+3" {
		t.Fatalf("text %q", s)
	}
}
