package restore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// TestH32TailPackMissing: a tail manifest whose pack object is gone fails
// the restore naming the pack, and leaves nothing of the partition.
func TestH32TailPackMissing(t *testing.T) {
	root, b, keys, _ := h26HostileArchive(t)
	m, err := archive.DecodeTailManifest(keys[1], h26Read(t, filepath.Join(root, filepath.FromSlash(keys[1]))))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, filepath.FromSlash(m.PackKey))); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	target := filepath.Join(parent, "restored")
	_, _, err = h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
	if err == nil || !strings.Contains(err.Error(), m.PackKey) {
		t.Fatalf("restore with a pack missing: %v (want an error naming %s)", err, m.PackKey)
	}
	t.Logf("error: %v", err)
	if _, serr := os.Stat(filepath.Join(target, "configs-0")); serr == nil {
		t.Fatalf("partition dir left in place after the failure")
	}
	h26Outside(t, parent, target)
}

// TestH32TailReplicaOverlap: broker 0 archived segment [0, 2) and then
// stopped capturing (it died); broker 7, the new leader, never rolled: its
// active segment starts at 0 and holds offsets 0 and up, all captured.
// Restore must bring back broker 7's captured offsets past 2 (or at least
// report them missing), never drop them silently as "superseded".
func TestH32TailReplicaOverlap(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	_, b := h26Archive(t, dir)
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
	whole := append(append([]byte(nil), rolled...), active...) // broker 7's never-rolled segment
	wb := h26Bounds(t, whole, 0)
	mid := wb[len(wb)-2]
	t0 := time.Now().UTC()
	h26Pack(t, b, layout, p0.Cluster, 7, 1, t0, 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 0, Data: whole, From: 0, To: mid})
	h26Pack(t, b, layout, p0.Cluster, 7, 2, t0.Add(time.Minute), 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 0, Data: whole, From: mid, To: int64(len(whole))})
	last := int64(h32NextOffset(t, whole)) - 1
	if last < 2 {
		t.Fatalf("fixture: last offset %d", last)
	}
	for _, sel := range []restore.Selection{{Broker: -1}} {
		target := filepath.Join(t.TempDir(), "restored")
		sel.Topics, sel.Partitions = nil, []int32{28}
		plan, _, err := h26Restore(t, b, sel, target, -1)
		if err != nil {
			t.Fatalf("broker %d: %v", sel.Broker, err)
		}
		pp := h26Part(plan, "__consumer_offsets", 28)
		if pp == nil || pp.LastOffset != last || len(pp.Gaps) > 0 {
			t.Fatalf("broker %d: plan last offset %d, gaps %v (want %d: broker 7 captured it); tail %+v", sel.Broker, pp.LastOffset, pp.Gaps, last, pp.Tail)
		}
		got := h26Read(t, filepath.Join(target, "__consumer_offsets-28", segment.FormatName(0, segment.KindLog)))
		if !bytes.Equal(got, whole) {
			t.Fatalf("broker %d: restored segment 0 is %d bytes, broker 7 held %d", sel.Broker, len(got), len(whole))
		}
	}
}

// h32NextOffset is the offset after the last batch of data.
func h32NextOffset(t *testing.T, data []byte) int64 {
	t.Helper()
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), "next", segment.ReaderOptions{BaseOffset: -1})
	next := int64(0)
	for r.Next() {
		next = r.Batch().NextOffset()
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return next
}

// TestH32TailReplicaOverlapInside: the other replica's active segment
// starts inside the archived segment (its base 1 is inside [0, 2)): it cannot be
// spliced without a cut, so the offsets only it holds are reported as a gap
// naming the broker, not dropped silently.
func TestH32TailReplicaOverlapInside(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	// No root files: the gap must come from the captures, not the checkpoints.
	for _, f := range []string{"recovery-point-offset-checkpoint", "replication-offset-checkpoint", "log-start-offset-checkpoint"} {
		os.Remove(filepath.Join(dir, f))
	}
	_, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp0 := h26Part(p0, "__consumer_offsets", 28)
	pdir := filepath.Join(dir, "__consumer_offsets-28")
	// Broker 7's segment starts at 1 (inside [0, 2)) and holds offset 2.
	data := h26Read(t, filepath.Join(pdir, segment.FormatName(2, segment.KindLog)))
	h26Pack(t, b, layout, p0.Cluster, 7, 1, time.Now().UTC(), 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 1, Data: data, From: 0, To: int64(len(data))})
	plan, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1, Partitions: []int32{28}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp == nil || len(pp.Gaps) != 1 || pp.Gaps[0].From != 2 || pp.Gaps[0].To != 3 || !strings.Contains(pp.Gaps[0].Reason, "--broker 7") {
		t.Fatalf("plan %+v gaps %+v (want offsets 2..2 reported, naming broker 7)", pp, pp.Gaps)
	}
}

// h32Renumber sets the base offset and leader epoch of the batch at pos
// (fields outside the batch CRC).
func h32Renumber(data []byte, pos int, base int64, epoch int32) []byte {
	out := append([]byte(nil), data...)
	binary.BigEndian.PutUint64(out[pos:], uint64(base))
	binary.BigEndian.PutUint32(out[pos+12:], uint32(epoch))
	return out
}

// TestH32TailReplicaOverlapStale: the replica whose captured segment starts
// below the archived end reaches further, but in an older leader epoch than
// the captures continuing the archive (it diverged: an unclean election
// truncated it elsewhere). The newer epoch's log is restored, not the
// longer stale one.
func TestH32TailReplicaOverlapStale(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	_, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp0 := h26Part(p0, "__consumer_offsets", 28)
	pdir := filepath.Join(dir, "__consumer_offsets-28")
	rolled := h26Read(t, filepath.Join(pdir, segment.FormatName(0, segment.KindLog)))
	active := h26Read(t, filepath.Join(pdir, segment.FormatName(2, segment.KindLog)))
	epoch := int32(binary.BigEndian.Uint32(active[12:]))
	// Broker 7 (stale, epoch e): offsets 0..3 in its segment 0.
	stale := append(append(append([]byte(nil), rolled...), active...), h32Renumber(active, 0, 3, epoch)...)
	// Broker 0 (new leader, epoch e+1): offset 2 in its segment 2.
	fresh := h32Renumber(active, 0, 2, epoch+1)
	t0 := time.Now().UTC()
	h26Pack(t, b, layout, p0.Cluster, 7, 1, t0.Add(time.Minute), 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 0, Data: stale, From: 0, To: int64(len(stale))})
	h26Pack(t, b, layout, p0.Cluster, 0, 1, t0, 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 2, Data: fresh, From: 0, To: int64(len(fresh))})
	plan, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1, Partitions: []int32{28}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp == nil || pp.Tail == nil || pp.Tail.Broker != 0 || pp.LastOffset != 2 || len(pp.Segments) != 2 {
		t.Fatalf("plan %+v tail %+v (want broker 0's epoch %d log, ending at 2)", pp, pp.Tail, epoch+1)
	}
}

// TestH32TailToTime: --to-time inside the captured active segment keeps
// exactly the batches up to that time (a prefix, as Kafka's recovery of a
// cut log), and the restored segment is that prefix of the broker's bytes.
func TestH32TailToTime(t *testing.T) {
	ctx := context.Background()
	root, b, _, data := h26HostileArchive(t)
	_ = root
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), "t", segment.ReaderOptions{BaseOffset: 0})
	type bt struct {
		end, last, ts int64
	}
	var bs []bt
	for r.Next() {
		x := r.Batch()
		bs = append(bs, bt{x.Pos + x.Size(), x.LastOffset(), x.MaxTimestamp})
	}
	// A time strictly inside: the first batch whose max timestamp grows
	// past the first batch's, minus one ms.
	cut := -1
	for i := 1; i < len(bs); i++ {
		if bs[i].ts > bs[0].ts && i > 3 {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Skip("fixture timestamps do not grow")
	}
	toTime := bs[cut].ts - 1
	want := 0
	for i := range bs { // the prefix Kafka keeps: up to the first batch past the time
		if bs[i].ts > toTime {
			break
		}
		want = i
	}
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	rep, err := restore.Run(ctx, src, plan, restore.Options{Targets: []string{target}, ToOffset: -1, ToTime: toTime, NodeID: -1})
	if err != nil {
		t.Fatal(err)
	}
	got := h26Read(t, filepath.Join(target, "configs-0", segment.FormatName(0, segment.KindLog)))
	if !bytes.Equal(got, data[:bs[want].end]) || rep.Cut["configs-0"] != bs[want].last {
		t.Fatalf("--to-time %d: restored %d bytes, cut %v; want %d bytes up to offset %d", toTime, len(got), rep.Cut, bs[want].end, bs[want].last)
	}
}

// TestH32TailReplicaLagging: two replicas' captures both continue the
// archive in the same leader epoch; the follower captured later but lags
// (out of sync), the leader's captures reach further. Restore takes the
// log that reaches furthest in the newest epoch, not the capture read
// last: that would drop records the archive holds.
func TestH32TailReplicaLagging(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	_, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp0 := h26Part(p0, "__consumer_offsets", 28)
	pdir := filepath.Join(dir, "__consumer_offsets-28")
	active := h26Read(t, filepath.Join(pdir, segment.FormatName(2, segment.KindLog)))
	epoch := int32(binary.BigEndian.Uint32(active[12:]))
	leader := append(append([]byte(nil), active...), h32Renumber(active, 0, 3, epoch)...)
	t0 := time.Now().UTC()
	h26Pack(t, b, layout, p0.Cluster, 0, 1, t0, 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 2, Data: leader, From: 0, To: int64(len(leader))})
	h26Pack(t, b, layout, p0.Cluster, 7, 1, t0.Add(time.Minute), 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 2, Data: active, From: 0, To: int64(len(active))})
	target := filepath.Join(t.TempDir(), "restored")
	plan, _, err := h26Restore(t, b, restore.Selection{Broker: -1, Partitions: []int32{28}}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp == nil || pp.Tail == nil || pp.Tail.Broker != 0 || pp.LastOffset != 3 {
		t.Fatalf("plan last offset %d, tail %+v (want broker 0's captures, to offset 3)", pp.LastOffset, pp.Tail)
	}
	got := h26Read(t, filepath.Join(target, "__consumer_offsets-28", segment.FormatName(2, segment.KindLog)))
	if !bytes.Equal(got, leader) {
		t.Fatalf("restored active segment %d bytes, the leader held %d", len(got), len(leader))
	}
}

// TestH32TailTruncatedAcrossRoll: the broker truncated below its active
// segment's base (a follower that diverged across a roll: Kafka deletes the
// later segments and truncates the one holding the target offset, which
// becomes the active segment again) and rewrote it in a new leader epoch.
// The archive holds the old rolled content of that segment; the captures of
// the rewritten one (lower base than the archived end, newer epoch, not
// longer) must be restored, not the superseded old content.
func TestH32TailTruncatedAcrossRoll(t *testing.T) {
	ctx := context.Background()
	dir := h26CopyDir(t, filepath.Join(h26Fixtures, "DonaldY__kafka-2.7.1/kafka-logs"))
	_, b := h26Archive(t, dir)
	src := restore.NewSource(b, archive.DecodeOptions{})
	layout := archive.NewLayout("")
	p0, err := restore.MakePlan(ctx, src, layout, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	pp0 := h26Part(p0, "__consumer_offsets", 28)
	pdir := filepath.Join(dir, "__consumer_offsets-28")
	rolled := h26Read(t, filepath.Join(pdir, segment.FormatName(0, segment.KindLog)))
	epoch := int32(binary.BigEndian.Uint32(rolled[12:]))
	rewritten := h32Renumber(rolled, 0, 0, epoch+1)
	h26Pack(t, b, layout, p0.Cluster, 0, 1, time.Now().UTC(), 4096,
		h26Cap{Topic: "__consumer_offsets", Partition: 28, TopicID: pp0.TopicID, Base: 0, Data: rewritten, From: 0, To: int64(len(rewritten))})
	target := filepath.Join(t.TempDir(), "restored")
	plan, _, err := h26Restore(t, b, restore.Selection{Broker: -1, Partitions: []int32{28}}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	pp := h26Part(plan, "__consumer_offsets", 28)
	if pp == nil || len(pp.Segments) != 1 || !pp.Segments[0].IsTail() {
		t.Fatalf("plan %+v tail %+v: want the rewritten segment from its captures", pp, pp.Tail)
	}
	got := h26Read(t, filepath.Join(target, "__consumer_offsets-28", segment.FormatName(0, segment.KindLog)))
	if !bytes.Equal(got, rewritten) {
		t.Fatal("restored segment 0 is not the broker's rewritten content")
	}
}

// TestH32TailEpochsWithoutCheckpoint: captures that carried no
// leader-epoch-checkpoint (the broker had not written it yet) span two
// leader epochs; the restored checkpoint must name both, each from where its
// batches start, not the last epoch from the segment's first offset.
func TestH32TailEpochsWithoutCheckpoint(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	data := h26Read(t, filepath.Join(h26Fixtures, "mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-configs-0/00000000000000000000.log"))
	bounds := h26Bounds(t, data, 0)
	mid := bounds[len(bounds)/2]
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), "e", segment.ReaderOptions{BaseOffset: 0})
	var second int64 = -1
	for r.Next() {
		x := r.Batch()
		ep := int32(0)
		if x.Pos >= mid {
			ep = 3
			if second < 0 {
				second = x.BaseOffset
			}
		}
		data = h32Renumber(data, int(x.Pos), x.BaseOffset, ep)
	}
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	layout := archive.NewLayout("")
	h26Pack(t, b, layout, "c1", 1, 1, t0, 4096, h26Cap{Topic: "configs", TopicID: h26Topic, Data: data, From: 0, To: mid})
	h26Pack(t, b, layout, "c1", 1, 2, t0.Add(time.Minute), 4096, h26Cap{Topic: "configs", TopicID: h26Topic, Data: data, From: mid, To: int64(len(data))})
	target := filepath.Join(t.TempDir(), "restored")
	if _, _, err := h26Restore(t, b, restore.Selection{Broker: -1}, target, -1); err != nil {
		t.Fatal(err)
	}
	got := string(h26Read(t, filepath.Join(target, "configs-0", "leader-epoch-checkpoint")))
	want := fmt.Sprintf("0\n2\n0 0\n3 %d\n", second)
	if got != want {
		t.Fatalf("leader-epoch-checkpoint %q, want %q", got, want)
	}
}
