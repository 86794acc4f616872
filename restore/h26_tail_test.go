package restore_test

import (
	"bytes"
	"context"
	"errors"
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

// TestH26TailAfterRolled: a real broker's log dir whose partition has a
// rolled segment (archived by the agent) and an active one (captured): the
// restore is the archived segment followed by the captured active segment,
// byte-identical; a capture of the rolled segment taken before it rolled is
// superseded and ignored.
func TestH26TailAfterRolled(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	root, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp0 := h26Part(p0, "__consumer_offsets", 28)
	if pp0 == nil || len(pp0.Segments) != 1 || pp0.Segments[0].Manifest.NextSegmentBase != 2 {
		t.Fatalf("archived __consumer_offsets-28: %+v", pp0)
	}
	pdir := filepath.Join(dir, "__consumer_offsets-28")
	rolled := h26Read(t, filepath.Join(pdir, segment.FormatName(0, segment.KindLog)))
	active := h26Read(t, filepath.Join(pdir, segment.FormatName(2, segment.KindLog)))
	t0 := time.Now().UTC()
	h26Pack(t, b, layout, p0.Cluster, 0, 1, t0, 64,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 0, Data: rolled, From: 0, To: int64(len(rolled))})
	h26Pack(t, b, layout, p0.Cluster, 0, 2, t0.Add(time.Second), 64,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 2, Data: active, From: 0, To: int64(len(active))})
	target := filepath.Join(t.TempDir(), "restored")
	plan, _, err := h26Restore(t, b, restore.Selection{Broker: -1, Topics: regexp.MustCompile("^__consumer_offsets$"), Partitions: []int32{28}}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp == nil || pp.Tail == nil || pp.Tail.Superseded != 1 || pp.Tail.Captures != 1 || len(pp.Segments) != 2 || pp.LastOffset != 2 {
		t.Fatalf("plan %+v tail %+v", pp, pp.Tail)
	}
	for base, want := range map[int64][]byte{0: rolled, 2: active} {
		got := h26Read(t, filepath.Join(target, "__consumer_offsets-28", segment.FormatName(base, segment.KindLog)))
		if !bytes.Equal(got, want) {
			t.Errorf("segment %d: restored bytes differ from the broker's", base)
		}
	}
	_ = root
}

// TestH26TailTruncation: the broker truncated its active segment and
// rewrote the same offsets with other bytes (a new leader's epoch, as after
// an unclean election): the newer chain is restored, never a mix with the
// captures of the old content. Both a new chain from byte 0 and one that
// continues a capture below the truncation point are followed.
func TestH26TailTruncation(t *testing.T) {
	orig := h26Read(t, filepath.Join(h26Fixtures, "mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-configs-0/00000000000000000000.log"))
	bounds := h26Bounds(t, orig, 0)
	a, trunc, b2 := bounds[10], bounds[20], bounds[30]
	// The rewrite: the batches from the truncation point on, with a new
	// partition leader epoch (outside the batch CRC, as a new leader's
	// appends of the same offsets would differ).
	rewritten := append([]byte(nil), orig...)
	for _, pos := range bounds[20 : len(bounds)-1] {
		rewritten[pos+12], rewritten[pos+13], rewritten[pos+14], rewritten[pos+15] = 0, 0, 0, 7
	}
	if bytes.Equal(rewritten[trunc:], orig[trunc:]) {
		t.Fatal("the rewrite changed nothing")
	}
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		from int64 // where the new chain starts
	}{{"new chain from 0", 0}, {"new chain continues below the truncation", a}} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "archive")
			bk, err := uploader.NewLocal(root)
			if err != nil {
				t.Fatal(err)
			}
			layout := archive.NewLayout("")
			cfg := func(data []byte, from, to int64) h26Cap {
				return h26Cap{Topic: "configs", TopicID: h26Topic, Data: data, From: from, To: to}
			}
			h26Pack(t, bk, layout, "c1", 1, 1, t0, 512, cfg(orig, 0, a))
			h26Pack(t, bk, layout, "c1", 1, 2, t0.Add(time.Minute), 512, cfg(orig, a, b2))
			// A later capture of the old content, then the truncation and
			// the new chain.
			h26Pack(t, bk, layout, "c1", 1, 3, t0.Add(2*time.Minute), 512, cfg(orig, b2, bounds[35]))
			h26Pack(t, bk, layout, "c1", 1, 4, t0.Add(3*time.Minute), 512, cfg(rewritten, tc.from, bounds[25]))
			target := filepath.Join(t.TempDir(), "restored")
			plan, _, err := h26Restore(t, bk, restore.Selection{Broker: -1}, target, -1)
			if err != nil {
				t.Fatal(err)
			}
			got := h26Read(t, filepath.Join(target, "configs-0", segment.FormatName(0, segment.KindLog)))
			if !bytes.Equal(got, rewritten[:bounds[25]]) {
				t.Errorf("restored %d bytes, not the new content [0, %d) (a mix of chains?)", len(got), bounds[25])
			}
			pp := h26Part(plan, "configs", 0)
			if pp.Tail.Unusable != 4-pp.Tail.Captures || pp.Tail.Captures != 1+int(tc.from/max(tc.from, 1)) {
				t.Errorf("tail plan %+v", pp.Tail)
			}
		})
	}
}

// TestH26TailMetadataAndIncarnation: a whole-broker rebuild includes the
// captures of a __cluster_metadata log that never rolled (so the broker
// comes back with its metadata), a partition-level restore leaves them
// out; a topic deleted and re-created since its last archived segment, and
// never rolled since, comes back as its new incarnation from the captures,
// unless the old one is selected.
func TestH26TailMetadataAndIncarnation(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	_, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	old := h26Part(p0, "__consumer_offsets", 28)
	// The metadata log's bytes: a real KRaft snapshot's batches (offsets
	// 0..164), as a never-rolled __cluster_metadata-0 would hold.
	meta := h26Read(t, filepath.Join(h26Fixtures, "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/__cluster_metadata-0/00000000000000007364-0000000001.checkpoint"))
	lsx := h26Read(t, filepath.Join(h26Fixtures, "BiggerBrain__kafka/data/lsx1-0/00000000000000000000.log"))
	at := time.Now().UTC().Add(time.Minute)
	h26Pack(t, b, layout, p0.Cluster, 0, 1, at, 4096,
		h26Cap{Topic: "__cluster_metadata", TopicID: "AAAAAAAAAAAAAAAAAAAAAQ", Data: meta, From: 0, To: int64(len(meta))},
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: h26Topic, Data: lsx, From: 0, To: int64(len(lsx))})

	target := filepath.Join(t.TempDir(), "broker0")
	plan, _, err := h26Restore(t, b, restore.Selection{Broker: 0, Metadata: true}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	if miss := plan.MissingMetadata(); miss != "" {
		t.Errorf("whole-broker rebuild misses %s", miss)
	}
	if got := h26Read(t, filepath.Join(target, "__cluster_metadata-0", segment.FormatName(0, segment.KindLog))); !bytes.Equal(got, meta) {
		t.Errorf("__cluster_metadata-0: restored %d bytes, want the captured %d", len(got), len(meta))
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp.TopicID != h26Topic || pp.Incarnation != old.Incarnation+1 || len(pp.Segments) != 1 || !pp.Segments[0].IsTail() {
		t.Errorf("re-created topic: %+v", pp)
	}
	if got := h26Read(t, filepath.Join(target, "__consumer_offsets-28", segment.FormatName(0, segment.KindLog))); !bytes.Equal(got, lsx) {
		t.Errorf("re-created __consumer_offsets-28: not the new incarnation's captured bytes")
	}
	if _, err := os.Stat(filepath.Join(target, "__consumer_offsets-28", segment.FormatName(2, segment.KindLog))); err == nil {
		t.Errorf("re-created __consumer_offsets-28 mixes in the old incarnation's segments")
	}

	// Partition level: no metadata log; the old incarnation on request.
	p2, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1, TopicID: old.TopicID}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if h26Part(p2, "__cluster_metadata", 0) != nil {
		t.Error("a partition-level plan restores the metadata log")
	}
	if pp := h26Part(p2, "__consumer_offsets", 28); pp == nil || pp.TopicID != old.TopicID || len(pp.Segments) != len(old.Segments) {
		t.Errorf("old incarnation selected: %+v", pp)
	}
}

// TestH26TailReplicas: two replicas captured the partition; their active
// segments start at different offsets (replicas roll independently). The
// one whose segment continues the archived segments is used, even when the
// other one captured later.
func TestH26TailReplicas(t *testing.T) {
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	_, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(context.Background(), src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp0 := h26Part(p0, "__consumer_offsets", 28)
	pdir := filepath.Join(dir, "__consumer_offsets-28")
	active := h26Read(t, filepath.Join(pdir, segment.FormatName(2, segment.KindLog)))
	t0 := time.Now().UTC()
	// Broker 0's active segment starts at 2, where the archive ends.
	h26Pack(t, b, layout, p0.Cluster, 0, 1, t0, 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 2, Data: active, From: 0, To: int64(len(active))})
	// Broker 7 rolled elsewhere: its active segment starts at 3 (the
	// batch at offset 3: base offset rewritten, outside the batch CRC),
	// captured later.
	other := append([]byte(nil), active...)
	other[7] = 3
	h26Pack(t, b, layout, p0.Cluster, 7, 1, t0.Add(time.Minute), 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 3, Data: other, From: 0, To: int64(len(other))})
	plan, err := restore.MakePlan(context.Background(), src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp.Tail == nil || pp.Tail.Broker != 0 || len(pp.Segments) != 2 || pp.LastOffset != 2 {
		t.Fatalf("plan %+v tail %+v", pp, pp.Tail)
	}
}

// TestH26TailEncrypted: captures sealed with a client-side key restore with
// the key, byte for byte, and fail naming the key without it.
func TestH26TailEncrypted(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	key, err := archive.ParseCryptKey([]byte(strings.Repeat("5a", 32)))
	if err != nil {
		t.Fatal(err)
	}
	data := h26Read(t, filepath.Join(h26Fixtures, "BiggerBrain__kafka/data/lsx1-0/00000000000000000000.log"))
	bounds := h26Bounds(t, data, 0)
	layout := archive.NewLayout("")
	t0 := time.Now().UTC()
	h26PackKey(t, b, layout, "c1", 1, 1, t0, 300, key, h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: data, From: 0, To: bounds[7]})
	h26PackKey(t, b, layout, "c1", 1, 2, t0.Add(time.Minute), 300, key, h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: data, From: bounds[7], To: int64(len(data))})
	for _, keys := range [][]*archive.Key{{key}, nil} {
		src := restore.NewSource(b, archive.DecodeOptions{Keys: keys})
		plan, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "restored")
		_, err = restore.Run(ctx, src, plan, restore.Options{Targets: []string{target}, ToOffset: -1, ToTime: -1, NodeID: -1})
		if keys == nil {
			if !errors.Is(err, uploader.ErrUnknownKey) || !strings.Contains(err.Error(), key.ID()) {
				t.Errorf("restore without the key: %v, want an unknown-key error naming key %s", err, key.ID())
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := h26Read(t, filepath.Join(target, "lsx1-0", segment.FormatName(0, segment.KindLog))); !bytes.Equal(got, data) {
			t.Error("restored encrypted captures differ from the broker's segment")
		}
	}
}

// TestH26TailRolledNotArchived: the broker rolled a captured segment and
// was lost before the rolled segment was archived: the captures of the
// rolled segment and of the new active one are both restored, and what the
// captures of the rolled one miss is reported as a gap.
func TestH26TailRolledNotArchived(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	layout := archive.NewLayout("")
	lsx := h26Read(t, filepath.Join(h26Fixtures, "BiggerBrain__kafka/data/lsx1-0/00000000000000000000.log"))
	bounds := h26Bounds(t, lsx, 0)
	// The segment at 0 rolled at offset 14; its captures reached offset 4.
	// The new active segment at 14: lsx's last batch with its base offset
	// set to 14 (outside the batch CRC).
	next := append([]byte(nil), lsx[bounds[13]:]...)
	next[7] = 14
	t0 := time.Now().UTC()
	h26Pack(t, b, layout, "c1", 1, 1, t0, 4096, h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: lsx, From: 0, To: bounds[5]})
	h26Pack(t, b, layout, "c1", 1, 2, t0.Add(time.Minute), 4096, h26Cap{Topic: "lsx1", TopicID: h26Topic, Base: 14, Data: next, From: 0, To: int64(len(next))})
	target := filepath.Join(t.TempDir(), "restored")
	plan, rep, err := h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "lsx1", 0)
	if len(pp.Segments) != 2 || pp.LastOffset != 14 || len(pp.Gaps) != 1 || pp.Gaps[0].From != 5 || pp.Gaps[0].To != 14 {
		t.Fatalf("plan: %d segments, last %d, gaps %+v", len(pp.Segments), pp.LastOffset, pp.Gaps)
	}
	if len(rep.Gaps) != 1 {
		t.Errorf("report gaps %q", rep.Gaps)
	}
	for base, want := range map[int64][]byte{0: lsx[:bounds[5]], 14: next} {
		if got := h26Read(t, filepath.Join(target, "lsx1-0", segment.FormatName(base, segment.KindLog))); !bytes.Equal(got, want) {
			t.Errorf("segment %d: restored bytes differ from the captured ones", base)
		}
	}
}
