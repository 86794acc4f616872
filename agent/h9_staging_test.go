package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestH9NonRegularSegmentKeepsStagingOn: a directory named like a rolled
// segment's .log (link(2) refuses it with EPERM) is that segment's problem:
// retention protection stays on for every other segment of the log dir.
func TestH9NonRegularSegmentKeepsStagingOn(t *testing.T) {
	logs, _ := h2Logs(t)
	names, err := filepath.Glob(filepath.Join(logs, "t-0", "*.log"))
	if err != nil || len(names) < 2 {
		t.Fatalf("want rolled segments in t-0, got %v (%v)", names, err)
	}
	bad := names[0] // the oldest: rolled
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	a := h2Agent(t, logs, t.TempDir(), t.TempDir(), time.Hour, 1<<30) // nothing settles: all stay staged
	defer a.Close()
	if _, err := a.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range h2Seen(a) {
		if o.c.path(o.c.Files[0].Name) == bad {
			continue
		}
		n++
		if !o.staged {
			t.Errorf("%s base %d not protected from retention", o.c.DirPath, o.c.Base)
		}
	}
	if n == 0 {
		t.Fatal("no other rolled segments seen")
	}
	for d, why := range a.staging.off {
		t.Errorf("staging turned off for %s: %s", d, why)
	}
}
