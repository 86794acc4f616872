package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
)

// Durations in --json output are seconds everywhere (restore's
// duration_seconds): prune's duration_seconds and info's rpo_seconds, never
// nanoseconds.
func TestH40JSONDurationsInSeconds(t *testing.T) {
	tmp := t.TempDir()
	bucket := "file://" + filepath.Join(tmp, "bucket")
	out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", copyFixture(t, tmp), "--bucket", bucket, "--state-dir", filepath.Join(tmp, "state"))
	if code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	nanos := regexp.MustCompile(`"[a-z_]*_ns"`)
	for _, args := range [][]string{{"prune", "--keep-within", "24h", "--dry-run", "--json"}, {"info", "--json"}} {
		out, errOut, code := runSegvault(t, append(args, "--bucket", bucket)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		if k := nanos.FindString(out); k != "" {
			t.Errorf("%v: key %s in nanoseconds:\n%s", args, k, out)
		}
		want := map[string]string{"prune": "duration_seconds", "info": "rpo_seconds"}[args[0]]
		if !regexp.MustCompile(`"` + want + `": *[0-9.]+[,\n}]`).MatchString(out) {
			t.Errorf("%v: no numeric %q:\n%s", args, want, out)
		}
	}
	var s archive.Seconds
	if err := json.Unmarshal([]byte("1.5"), &s); err != nil || s.D() != 1500*time.Millisecond {
		t.Fatalf("Seconds from 1.5: %v %v", s.D(), err)
	}
	if b, _ := json.Marshal(archive.Seconds(2500 * time.Millisecond)); string(b) != "2.5" {
		t.Fatalf("Seconds(2.5s) = %s", b)
	}
}
