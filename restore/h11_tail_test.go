package restore_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// TestH11TailNotArchived: brokersim's active segment is never archived, so
// the captured root checkpoints name a log end E beyond the last archived
// segment's NextSegmentBase N. The plan reports N..E as a gap, a full
// restore ends the log at E with an empty segment there (checkpoints
// agreeing), and a point-in-time cut leaves the tail out.
func TestH11TailNotArchived(t *testing.T) {
	root, _, res := archiveWith(t, brokersim.Config{NodeID: 1, SegmentBytes: 32 << 10, Seed: 1,
		Topics: []brokersim.TopicSpec{{Name: "orders", Partitions: 2, Codec: "none", Records: 1500}}})
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(context.Background(), src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	// E: brokersim's log end, which its root checkpoints (captured by the
	// agent) name; the active segment from N on is never archived.
	ends := map[int32]int64{0: res.Partition("orders", 0).LogEndOffset, 1: res.Partition("orders", 1).LogEndOffset}
	for _, pp := range plan.Partitions {
		if len(pp.Segments) == 0 {
			t.Fatalf("%s-%d: no archived segment", pp.Topic, pp.Partition)
		}
		n := pp.Segments[len(pp.Segments)-1].Manifest.NextSegmentBase
		e := ends[pp.Partition]
		if e <= n {
			t.Fatalf("%s-%d: log end %d not past the archived end %d: the fixture does not test the tail", pp.Topic, pp.Partition, e, n)
		}
		found := false
		for _, g := range pp.Gaps {
			found = found || g.From == n && g.To == e && strings.Contains(g.Reason, "not archived")
		}
		if !found {
			t.Errorf("%s-%d: no gap %d..%d for the unarchived tail: %+v", pp.Topic, pp.Partition, n, e, pp.Gaps)
		}
	}
	target := filepath.Join(t.TempDir(), "restored")
	rep, err := run(t, root, target, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tailGaps := 0
	for _, g := range rep.Gaps {
		if strings.Contains(g, "not archived") {
			tailGaps++
		}
	}
	if tailGaps != 2 {
		t.Errorf("report gaps %q: want the 2 unarchived tails", rep.Gaps)
	}
	for p, e := range ends {
		dir := filepath.Join(target, "orders-"+itoa(p))
		for _, k := range []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex} {
			fi, err := os.Stat(filepath.Join(dir, segment.FormatName(e, k)))
			if err != nil || fi.Size() != 0 {
				t.Errorf("%s: tail segment file at %d (%s): %v", dir, e, k, err)
			}
		}
		for _, name := range []string{index.RecoveryPointFile, index.LogStartOffsetFile} {
			data, err := os.ReadFile(filepath.Join(target, name))
			if os.IsNotExist(err) {
				continue // a partition-level restore writes no root files
			} else if err != nil {
				t.Fatal(err)
			}
			ents, err := index.ParseOffsetCheckpoint(name, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range ents {
				if en.Topic == "orders" && en.Partition == p && (en.Offset > e || name == index.RecoveryPointFile && en.Offset != e) {
					t.Errorf("%s: orders-%d at %d, log end %d", name, p, en.Offset, e)
				}
			}
		}
	}
	// A point-in-time cut asks for an earlier state: no tail.
	cutTarget := filepath.Join(t.TempDir(), "cut")
	plan2, _ := restore.MakePlan(context.Background(), src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
	rep2, err := restore.Run(context.Background(), src, plan2, restore.Options{Targets: []string{cutTarget}, ToOffset: 10, ToTime: -1, NodeID: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rep2.Gaps {
		if strings.Contains(g, "not archived") {
			t.Errorf("cut restore reports the tail gap %q", g)
		}
	}
	for p, e := range ends {
		if _, err := os.Stat(filepath.Join(cutTarget, "orders-"+itoa(p), segment.FormatName(e, segment.KindLog))); err == nil {
			t.Errorf("cut restore wrote the tail segment at %d", e)
		}
	}
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }
