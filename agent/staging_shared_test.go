package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/segvault/segvault/internal/brokersim"
)

// TestUnstageKeepsSharedSnapshot: the producer snapshot at a roll is the end
// state of one segment and the start state of the next; unstaging the first
// (archived) must not remove the link the second, still staged, needs.
func TestUnstageKeepsSharedSnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	_, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Idempotent: true, Records: 1200}}})
	if err != nil {
		t.Fatal(err)
	}
	scans, err := scanLogDir(dir, topicFilter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var first, second *candidate
	for i := range scans {
		cs := scans[i].Candidates
		for j := 0; j+1 < len(cs); j++ {
			a, b := &cs[j], &cs[j+1]
			if a.Kind != "segment" || b.Kind != "segment" {
				continue
			}
			for _, fa := range a.Files {
				for _, fb := range b.Files {
					if fa.Name == fb.Name {
						first, second = a, b
					}
				}
			}
		}
	}
	if first == nil {
		t.Fatal("brokersim wrote no two adjacent segments sharing a producer snapshot")
	}
	st, err := newStaging(filepath.Join(filepath.Dir(dir), "state"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*candidate{first, second} {
		if ok, why, err := st.stage(c); !ok || err != nil {
			t.Fatal(why, err)
		}
	}
	st.unstage(first)
	for _, f := range second.Files {
		if _, err := os.Stat(st.path(second, f.Name)); err != nil {
			t.Errorf("unstaging base %d removed %s, still staged for base %d: %v", first.Base, f.Name, second.Base, err)
		}
	}
	st.unstage(second)
	if n := st.Used(); n != 0 {
		t.Fatalf("%d staged bytes left after unstaging both", n)
	}
}
