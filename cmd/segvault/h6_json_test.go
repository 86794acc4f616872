package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
)

var h6Snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// h6CheckJSONStyle walks a decoded JSON value: every key snake_case, every
// time an RFC 3339 string, no duration in nanoseconds.
func h6CheckJSONStyle(t *testing.T, what string, v any, path string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !h6Snake.MatchString(k) {
				t.Errorf("%s: key %q at %s is not snake_case", what, k, path)
			}
			if strings.HasSuffix(k, "_ns") || strings.HasSuffix(k, "_nanos") {
				t.Errorf("%s: %s.%s is a duration in nanoseconds", what, path, k)
			}
			if s, ok := e.(string); ok && (strings.HasSuffix(k, "_time") || k == "at" || strings.HasSuffix(k, "_at")) {
				if _, err := time.Parse(time.RFC3339, s); err != nil {
					t.Errorf("%s: %s.%s = %q is not RFC 3339", what, path, k, s)
				}
			}
			h6CheckJSONStyle(t, what, e, path+"."+k)
		}
	case []any:
		for _, e := range x {
			h6CheckJSONStyle(t, what, e, path+"[]")
		}
	}
}

// TestH6JSONStyle: ls, verify and inspect --json use one style (snake_case
// keys, RFC 3339 times), on an archive with a missing range (a gap).
func TestH6JSONStyle(t *testing.T) {
	tmp := t.TempDir()
	logs := filepath.Join(tmp, "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: logs, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 1, Records: 2000}}}); err != nil {
		t.Fatal(err)
	}
	bucketDir := filepath.Join(tmp, "bucket")
	out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--bucket", "file://"+bucketDir, "--state-dir", filepath.Join(tmp, "state"))
	if code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	// Drop the second segment's manifest: a gap.
	var mans []string
	filepath.Walk(bucketDir, func(p string, fi os.FileInfo, err error) error {
		if _, k, ok := archive.GuessKey(filepath.ToSlash(p)); err == nil && ok && k.IsManifest() {
			mans = append(mans, p)
		}
		return nil
	})
	sort.Strings(mans)
	if len(mans) < 3 {
		t.Fatalf("%d manifests archived, want 3 or more", len(mans))
	}
	if err := os.Remove(mans[1]); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runSegvault(t, "ls", "--json", "--bucket", "file://"+bucketDir)
	var v any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("ls --json: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, `"gaps"`) {
		t.Fatalf("ls --json shows no gap:\n%s", out)
	}
	h6CheckJSONStyle(t, "ls --json", v, "")

	out, errOut, _ = runSegvault(t, "verify", "--json", logs)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s\n%s", err, out, errOut)
	}
	h6CheckJSONStyle(t, "verify --json", v, "")

	seg, _ := filepath.Glob(filepath.Join(logs, "t-0", "*.log"))
	out, errOut, _ = runSegvault(t, "inspect", "--json", "--records", seg[0])
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines[:min(5, len(lines))] {
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("inspect --json: %v\n%s\n%s", err, line, errOut)
		}
		h6CheckJSONStyle(t, "inspect --json", v, "")
	}
}
