package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/segment"
)

// versionV2 archives a v2 version whose capture time (the manifest's
// modification time) is at; chunkKey, when set, puts the .log's only chunk
// in another object (a tail pack).
func (a *h29Arch) versionV2(topic string, p, broker int32, base, next int64, at time.Time, chunkKey string) (string, string) {
	a.t.Helper()
	a.seq++
	r := SegmentRef{Cluster: a.cl, Topic: topic, Partition: p, TopicID: NoTopicID, BaseOffset: base, Broker: broker}
	log := segment.FormatName(base, segment.KindLog)
	r.ContentID = UploadID(r, log, int64(a.seq), at, uint64(a.seq))
	dir := a.l.SegmentDirV2(r)
	dk := a.l.DataKeyV2(dir, log)
	raw := []byte(strings.Repeat("v", 500+a.seq))
	if chunkKey == "" {
		a.put(dk, raw)
	}
	m := &SegmentManifest{Format: SegmentManifestFormat, Version: ManifestVersionV2, ClusterID: a.cl, BrokerID: broker, LogDir: "/d",
		Topic: topic, Partition: p, TopicID: NoTopicID, Kind: KindSegment, BaseOffset: base, NextSegmentBase: next, ContentID: fmt.Sprintf("%012x", a.seq),
		UploadID: r.ContentID, SourceModTime: at, Agent: "segvault test", Validation: "shallow",
		Files: []FileRecord{{Name: log, Size: int64(len(raw)), SHA256: strings.Repeat("a", 64), ModTime: at, DataKey: dk, Chunks: []Chunk{
			{Key: chunkKey, Offset: 0, StoredSize: int64(len(raw)), RawSize: int64(len(raw)), CRC32C: "0000abcd", RawCRC32C: "0000abcd", Compression: CompressionNone}}}},
		Summary: &SegmentSummary{BaseOffset: base, FirstOffset: base, LastOffset: next - 1, Size: int64(len(raw)), FirstTimestamp: at.UnixMilli(), MaxTimestamp: at.UnixMilli()},
	}
	data, err := EncodeManifest(m)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := DecodeSegmentManifest("x", data); err != nil {
		a.t.Fatalf("test manifest does not decode: %v", err)
	}
	mk := dir + ManifestName
	a.put(mk, data)
	a.age(mk, at)
	return mk, dk
}

// tail writes a tail manifest and pack of broker capturing [0, 10) of the
// active segment at base of topic-p, at time at.
func (a *h29Arch) tail(topic string, p, broker int32, seq, base int64, at time.Time) (string, string) {
	a.t.Helper()
	uid := fmt.Sprintf("%016x", seq)
	pk, mk := a.l.TailPackKey(a.cl, broker, seq, uid), a.l.TailManifestKey(a.cl, broker, seq, uid)
	a.put(pk, []byte("0123456789"))
	m := TailManifest{Format: TailManifestFormat, Version: ManifestVersionV2, ClusterID: a.cl, BrokerID: broker, Seq: seq, UploadID: uid, PackKey: pk, PackSize: 10, CapturedAt: at,
		Captures: []TailCapture{{Topic: topic, Partition: p, TopicID: NoTopicID, SegmentBase: base, From: 0, To: 10, FirstOffset: base, LastOffset: base + 3, MaxTimestamp: at.UnixMilli(),
			Chunks: []Chunk{{Offset: 0, StoredSize: 10, RawSize: 10, CRC32C: "00000000", RawCRC32C: "00000000", Compression: CompressionNone}}}}}
	js, _ := json.Marshal(m)
	a.put(mk, js)
	a.age(mk, at)
	return mk, pk
}

// TestH29PruneV2: v2 versions (capture time = the manifest's modification
// time) are pruned like v1 ones, a v1 version superseded by a v2 one too;
// a tail capture goes once its segment was archived by the window's start,
// not before, and a pack a kept manifest's chunk names is never deleted.
func TestH29PruneV2(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	m1, d1 := a.version("kv", 0, 1, 0, 100, now.Add(-10*day)) // v1, superseded by a v2 rewrite
	m2, d2 := a.versionV2("kv", 0, 1, 0, 100, now.Add(-5*day), "")
	m3, d3 := a.versionV2("kv", 0, 1, 0, 100, now.Add(-4*day), "") // newest
	m4, d4 := a.versionV2("kv", 0, 1, 100, 200, now.Add(-9*day), "")
	// tails: of segment 100 (archived at -9d): goes; of segment 200 (not
	// archived): stays; of segment 0 but captured in the window: stays.
	t1, p1 := a.tail("kv", 0, 1, 1, 100, now.Add(-9*day-time.Hour))
	t2, p2 := a.tail("kv", 0, 1, 2, 200, now.Add(-8*day))
	t3, p3 := a.tail("kv", 0, 1, 3, 0, now.Add(-time.Hour))
	// a tail whose pack a kept v2 manifest uses for its chunk: the tail
	// manifest may go, the pack not.
	t4, p4 := a.tail("other", 0, 1, 4, 0, now.Add(-20*day))
	m5, _ := a.versionV2("other", 0, 1, 0, 50, now.Add(-19*day), p4)
	rep := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	keys := a.keys()
	h29Has(t, keys, false, m1, d1, m2, d2, t1, p1, t4)
	h29Has(t, keys, true, m3, d3, m4, d4, t2, p2, t3, p3, p4, m5)
	t.Logf("v2 prune: %d objects, %d bytes freed", len(rep.Deleted), rep.BytesFreed)
	if rep := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1}); len(rep.Deleted) != 0 {
		t.Errorf("second prune deleted %v", rep.Deleted)
	}
}

// TestH29PruneKeepsPacksWithBadManifest: a manifest that does not decode
// may name chunks in any tail pack, so with one in the archive no pack goes
// (the tail manifest still may).
func TestH29PruneKeepsPacksWithBadManifest(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	a.versionV2("kv", 0, 1, 100, 200, now.Add(-9*day), "")
	tm, pk := a.tail("kv", 0, 1, 1, 100, now.Add(-9*day-time.Hour))
	bad, _ := a.version("kv", 1, 1, 0, 10, now.Add(-9*day))
	a.age(bad, now) // keeps its mtime sane; the content is what is bad
	if err := a.b.Delete(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	a.put(bad, []byte("{"))
	rep, err := Prune(context.Background(), a.b, a.l, "", PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1})
	if err != nil || len(rep.Undecodable) != 1 {
		t.Fatalf("prune: %v, undecodable %v", err, rep.Undecodable)
	}
	keys := a.keys()
	h29Has(t, keys, false, tm)
	h29Has(t, keys, true, pk, bad)
}

// TestH29PruneV2RestoreOrder: versions are ordered as restore orders them
// (v2: the .log's mtime), not by when they reached the bucket: a version
// archived late but of an older file is the superseded one.
func TestH29PruneV2RestoreOrder(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	mOld, dOld := a.versionV2("kv", 0, 1, 0, 100, now.Add(-10*day), "")
	a.age(mOld, now.Add(-3*day)) // reached the bucket late
	mNew, dNew := a.versionV2("kv", 0, 1, 0, 100, now.Add(-9*day), "")
	a.age(mNew, now.Add(-8*day))
	a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	keys := a.keys()
	h29Has(t, keys, false, mOld, dOld)
	h29Has(t, keys, true, mNew, dNew)
}
