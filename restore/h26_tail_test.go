package restore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

const h26Topic = "nigi0dJNRASJVYh5eRn0Vg" // lsx1's real topic id

// TestH26TailNeverRolled: partitions that never rolled (real segments of
// real brokers) are archived only as tail captures, three per partition
// over three packs; restore rebuilds each active segment byte for byte,
// with indexes rebuilt and the leader epochs of the newest capture, and a
// --to-offset cut lands inside it. --rolled-only restores nothing.
func TestH26TailNeverRolled(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	layout := archive.NewLayout("")
	configs := h26Read(t, filepath.Join(h26Fixtures, "mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-configs-0/00000000000000000000.log"))
	lsx := h26Read(t, filepath.Join(h26Fixtures, "BiggerBrain__kafka/data/lsx1-0/00000000000000000000.log"))
	lsxEpochs := h26Read(t, filepath.Join(h26Fixtures, "BiggerBrain__kafka/data/lsx1-0/leader-epoch-checkpoint"))
	cb, lb := h26Bounds(t, configs, 0), h26Bounds(t, lsx, 0)
	c1, c2 := cb[len(cb)/3], cb[2*len(cb)/3]
	l1, l2 := lb[4], lb[9]
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// Partition state with the final epochs, even in the earliest capture.
	h26Pack(t, b, layout, "c1", 1, 1, t0, 4096,
		h26Cap{Topic: "connect-configs", TopicID: h26Topic, Data: configs, From: 0, To: c1},
		h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: lsx, From: 0, To: l1, Epochs: []byte("0\n1\n0 0\n")})
	h26Pack(t, b, layout, "c1", 1, 2, t0.Add(time.Minute), 4096,
		h26Cap{Topic: "connect-configs", TopicID: h26Topic, Data: configs, From: c1, To: c2},
		h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: lsx, From: l1, To: l2})
	h26Pack(t, b, layout, "c1", 1, 3, t0.Add(2*time.Minute), 4096,
		h26Cap{Topic: "connect-configs", TopicID: h26Topic, Data: configs, From: c2, To: int64(len(configs))},
		h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: lsx, From: l2, To: int64(len(lsx)), Epochs: lsxEpochs})

	target := filepath.Join(t.TempDir(), "restored")
	plan, rep, err := h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Cluster != "c1" || len(plan.Partitions) != 2 || len(plan.Bad) > 0 {
		t.Fatalf("plan: cluster %q, %d partitions, bad %v", plan.Cluster, len(plan.Partitions), plan.Bad)
	}
	for _, want := range []struct {
		topic string
		data  []byte
		last  int64
	}{{"connect-configs", configs, 53}, {"lsx1", lsx, 13}} {
		pp := h26Part(plan, want.topic, 0)
		if pp == nil || pp.Tail == nil || pp.Tail.Captures != 3 || pp.Tail.LastOffset != want.last || pp.LastOffset != want.last || len(pp.Segments) != 1 || !pp.Segments[0].IsTail() {
			t.Fatalf("%s: plan %+v tail %+v", want.topic, pp, pp.Tail)
		}
		dir := filepath.Join(target, want.topic+"-0")
		got := h26Read(t, filepath.Join(dir, segment.FormatName(0, segment.KindLog)))
		if !bytes.Equal(got, want.data) {
			t.Errorf("%s: restored active segment differs from the broker's (%d bytes, want %d)", want.topic, len(got), len(want.data))
		}
		for _, k := range []segment.FileKind{segment.KindIndex, segment.KindTimeIndex} {
			if _, err := os.Stat(filepath.Join(dir, segment.FormatName(0, k))); err != nil {
				t.Errorf("%s: index not rebuilt: %v", want.topic, err)
			}
		}
		verifyIndexes(t, filepath.Join(dir, segment.FormatName(0, segment.KindLog)))
	}
	if rep.Segments != 2 || rep.Rebuilt < 4 {
		t.Errorf("report: %+v", rep)
	}
	ep := h26Read(t, filepath.Join(target, "lsx1-0", index.LeaderEpochCheckpointFile))
	if !bytes.Equal(ep, lsxEpochs) {
		t.Errorf("leader-epoch-checkpoint %q, want the newest capture's %q", ep, lsxEpochs)
	}
	if pm, err := os.ReadFile(filepath.Join(target, "lsx1-0", index.PartitionMetadataFile)); err != nil || !strings.Contains(string(pm), h26Topic) {
		t.Errorf("partition.metadata: %q %v", pm, err)
	}

	// A cut inside the captured active segment.
	cut := filepath.Join(t.TempDir(), "cut")
	_, rep, err = h26Restore(t, b, restore.Selection{Broker: -1, Topics: regexp.MustCompile("^connect-configs$")}, cut, 20)
	if err != nil {
		t.Fatal(err)
	}
	got := h26Read(t, filepath.Join(cut, "connect-configs-0", segment.FormatName(0, segment.KindLog)))
	last := int64(-1)
	r := segment.NewReader(bytes.NewReader(got), int64(len(got)), "cut", segment.ReaderOptions{BaseOffset: 0})
	for r.Next() {
		last = r.Batch().LastOffset()
	}
	if r.Err() != nil || last > 20 || last < 15 || !bytes.HasPrefix(configs, got) {
		t.Errorf("cut at 20: last offset %d, prefix of the original %v, %v", last, bytes.HasPrefix(configs, got), r.Err())
	}
	if rep.Cut["connect-configs-0"] != last {
		t.Errorf("report cut %v, last offset %d", rep.Cut, last)
	}

	// --rolled-only: nothing rolled, nothing to restore.
	src := restore.NewSource(b, archive.DecodeOptions{})
	p2, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1, RolledOnly: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Partitions) != 0 {
		t.Errorf("--rolled-only planned %d partitions from captures", len(p2.Partitions))
	}
}
