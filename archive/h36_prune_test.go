package archive

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
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
