package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// h36Tail writes a tail manifest and pack of broker capturing the bytes
// [from, to) (offsets first..last) of the active segment at base of
// topic-p, at time at.
func (a *h29Arch) h36Tail(topic string, p, broker int32, seq, base, from, to, first, last int64, at time.Time) (string, string) {
	a.t.Helper()
	uid := fmt.Sprintf("%016x", seq)
	pk, mk := a.l.TailPackKey(a.cl, broker, seq, uid), a.l.TailManifestKey(a.cl, broker, seq, uid)
	a.put(pk, make([]byte, to-from))
	m := TailManifest{Format: TailManifestFormat, Version: ManifestVersionV2, ClusterID: a.cl, BrokerID: broker, Seq: seq, UploadID: uid, PackKey: pk, PackSize: to - from, CapturedAt: at,
		Captures: []TailCapture{{Topic: topic, Partition: p, TopicID: NoTopicID, SegmentBase: base, From: from, To: to, FirstOffset: first, LastOffset: last, MaxTimestamp: at.UnixMilli(),
			Chunks: []Chunk{{Offset: 0, StoredSize: to - from, RawSize: to - from, CRC32C: "00000000", RawCRC32C: "00000000", Compression: CompressionNone}}}}}
	js, _ := json.Marshal(m)
	a.put(mk, js)
	a.age(mk, at)
	return mk, pk
}

// TestH36PruneTailOtherReplicaRolledShort: replicas roll at different
// offsets. Broker 2 archived segment [0, 120); broker 1's active segment
// starts at 100 and its captures reach offset 149. A restore of the newest
// state splices broker 1's captures after offset 120 (restore/tail.go
// spliceOverlap), so they are the only copy of 120..149: the tails stay,
// the whole chain (the capture from byte 0 too, which restore needs to
// rebuild the segment) while any of it reaches past what the rolled
// segments cover. Once broker 2 archived [0, 200) they go.
func TestH36PruneTailOtherReplicaRolledShort(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	a.versionV2("kv", 0, 2, 0, 120, now.Add(-9*day), "")
	ta, pa := a.h36Tail("kv", 0, 1, 1, 100, 0, 10, 100, 110, now.Add(-9*day))
	tb, pb := a.h36Tail("kv", 0, 1, 2, 100, 10, 20, 111, 149, now.Add(-8*day))
	a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	h29Has(t, a.keys(), true, ta, pa, tb, pb)

	a.versionV2("kv", 0, 2, 120, 200, now.Add(-7*day), "")
	a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	h29Has(t, a.keys(), false, ta, pa, tb, pb)
}

// h36Snapshot is every object of the store: key -> size and mtime.
func (a *h29Arch) h36Snapshot() map[string]string {
	a.t.Helper()
	out := map[string]string{}
	err := a.b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		out[oi.Key] = fmt.Sprintf("%d %s", oi.Size, oi.ModTime.UTC().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		a.t.Fatal(err)
	}
	return out
}

// TestH36PruneDryRunMinIO: --dry-run against MinIO (plain and object-lock
// buckets) with marks a real prune left pending (their delay passed),
// superseded versions, a tail and an orphan: it reports deletions and the
// bytes, and the bucket is unchanged, object for object.
func TestH36PruneDryRunMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	for _, lock := range []bool{false, true} {
		bucket := srv.NewBucket(t)
		if lock {
			bucket = srv.NewObjectLockBucket(t)
		}
		a := &h29Arch{t: t, b: newTestS3(t, srv, bucket, nil), l: NewLayout(""), cl: "c1"}
		now := time.Now().UTC().Truncate(time.Second)
		day := 24 * time.Hour
		a.version("kv", 0, 1, 0, 100, now.Add(-10*day))
		a.version("kv", 0, 1, 0, 100, now.Add(-9*day))
		a.version("kv", 0, 1, 0, 100, now.Add(-5*day))
		a.version("kv", 1, 1, 0, 100, now.Add(-10*day))
		a.version("kv", 1, 1, 0, 100, now.Add(-4*day))
		// a real prune: marks written, manifests gone, data pending
		rep := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now})
		if len(rep.Pending) == 0 {
			t.Fatalf("lock %v: no pending marks: %+v", lock, rep)
		}
		a.version("kv", 1, 1, 0, 100, now.Add(-3*day)) // supersedes the -4d one
		before := a.h36Snapshot()
		dry := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now.Add(2 * time.Hour), DryRun: true})
		if len(dry.Deleted) == 0 || dry.BytesFreed == 0 || len(dry.Units) == 0 {
			t.Errorf("lock %v: dry run reports nothing: %+v", lock, dry)
		}
		after := a.h36Snapshot()
		for k, v := range before {
			if after[k] != v {
				t.Errorf("lock %v: dry run changed %s: %q -> %q", lock, k, v, after[k])
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("lock %v: dry run wrote %s", lock, k)
			}
		}
	}
}

// TestH36PruneTailNeverRolled: the captures of a partition that never
// rolled are its only copy however old: they stay, and so does a tail of
// that partition's broker whose other partitions all rolled long ago.
func TestH36PruneTailNeverRolled(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	tm, pk := a.h36Tail("idle", 0, 1, 1, 0, 0, 10, 0, 5, now.Add(-30*day))
	a.versionV2("kv", 0, 1, 0, 100, now.Add(-20*day), "")
	tm2, pk2 := a.h36Tail("kv", 0, 1, 2, 0, 0, 10, 0, 50, now.Add(-25*day))
	a.prune(PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1})
	keys := a.keys()
	h29Has(t, keys, true, tm, pk)
	h29Has(t, keys, false, tm2, pk2)
}
