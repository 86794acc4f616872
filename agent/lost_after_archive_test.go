package agent

import (
	"context"
	"os"
	"testing"
)

// TestLateShipmentOfArchivedSegmentIsNotLost: a second shipment of a segment
// that another one has just archived (dispatched before that one committed)
// finds the file deleted by retention and its staged link gone. It must not
// record the archived segment as lost (a gap marker, and its archived state
// entry overwritten): seen once under load in TestStorageOutage.
func TestLateShipmentOfArchivedSegmentIsNotLost(t *testing.T) {
	logs, _ := h2Logs(t)
	state, archive := t.TempDir(), t.TempDir()
	a := h2Agent(t, logs, state, archive, 0, 1<<30)
	defer a.Close()
	scans, err := scanLogDir(logs, a.snap().filter, false)
	if err != nil {
		t.Fatal(err)
	}
	var stale *observation
	for _, ps := range scans {
		for _, c := range ps.Candidates {
			if c.Kind == "segment" {
				stale = &observation{c: c}
				break
			}
		}
		if stale != nil {
			break
		}
	}
	if stale == nil {
		t.Fatal("no rolled segment")
	}
	if r, err := a.shipOne(context.Background(), stale); err != nil || r.status != statusArchived {
		t.Fatalf("first shipment: %+v %v", r, err)
	}
	for _, f := range stale.c.Files { // retention, after the first shipment unstaged it
		os.Remove(stale.c.path(f.Name))
	}
	a.staging.unstage(&stale.c)
	r, err := a.shipOne(context.Background(), stale)
	if err != nil || r.status == statusLost {
		t.Fatalf("late second shipment of an archived segment: %+v %v", r, err)
	}
	if e, ok := a.state.Get(stale.c.key()); !ok || e.Status != statusArchived {
		t.Fatalf("state entry after the late shipment: %+v", e)
	}
}
