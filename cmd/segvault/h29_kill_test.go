package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

// TestH29PruneKilled: the prune binary killed (SIGKILL) half way through is
// finished by the next run: every superseded version gone, every newest
// version and its data there, no mark left; a third run deletes nothing.
func TestH29PruneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("binary")
	}
	bin := h6Binary(t)
	halfway := false
	for attempt, delay := range []time.Duration{150, 100, 220, 80, 300, 120} {
		if halfway {
			break
		}
		delay *= time.Millisecond
		dir, old := h29Archive(t, 300)
		args := []string{"prune", "--bucket", "file://" + dir, "--keep-within", "1d", "--delete-delay", "0", "--concurrency", "1"}
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		cmd.Wait()
		gone := 0
		for _, k := range old {
			if _, err := os.Stat(filepath.Join(dir, k)); os.IsNotExist(err) {
				gone++
			}
		}
		marks, _ := filepath.Glob(filepath.Join(dir, "v2", "c1", "deletion-marks", "*.json"))
		halfway = gone > 0 && gone < len(old) || len(marks) > 0
		t.Logf("attempt %d: killed after %s: %d of %d superseded manifests gone, %d marks left", attempt, delay, gone, len(old), len(marks))
		out, stderr, code := h6Exec(t, args...)
		if code != 0 {
			t.Fatalf("re-run: exit %d\n%s\n%s", code, out, stderr)
		}
		var left []string // as the store lists them (a killed Create's temp file is not an object)
		store, err := uploader.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		store.List(context.Background(), "", func(oi uploader.ObjectInfo) error { left = append(left, oi.Key); return nil })
		// per partition: the newest version's manifest and data.
		if len(left) != 2*300 {
			var odd []string
			for _, k := range left {
				if !strings.Contains(k, "/1-000000000002/") {
					odd = append(odd, k)
				}
			}
			t.Fatalf("after the re-run %d objects are left, want %d: %v", len(left), 2*300, odd)
		}
		for _, k := range left {
			if strings.Contains(k, "/1-000000000001/") || strings.Contains(k, "deletion-marks") {
				t.Fatalf("left behind: %s", k)
			}
		}
		if out, _, code := h6Exec(t, args...); code != 0 || !strings.Contains(out, "deleted 0 objects") {
			t.Fatalf("third run: exit %d\n%s", code, out)
		}
	}
	if !halfway {
		t.Log("no kill landed half way (the machine is too fast or too slow); the re-runs were checked anyway")
	}
}
