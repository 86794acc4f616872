package restore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// TestH32TailPlanScale: planning over tail manifests of 10,000 captures
// each (10,000 light partitions of one broker) stays fast and bounded.
func TestH32TailPlanScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale")
	}
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	layout := archive.NewLayout("")
	const parts, rounds = 10000, 20
	sha := func(p, r int) string { return fmt.Sprintf("%056x%08x", p, r) }
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var size int
	for r := 0; r < rounds; r++ {
		uid := fmt.Sprintf("%016x", r+1)
		m := archive.TailManifest{Format: archive.TailManifestFormat, Version: archive.ManifestVersionV2, ClusterID: "c1", BrokerID: 1,
			Seq: int64(r + 1), UploadID: uid, PackKey: layout.TailPackKey("c1", 1, int64(r+1), uid), PackSize: parts * 100, CapturedAt: t0.Add(time.Duration(r) * time.Minute)}
		for p := 0; p < parts; p++ {
			prev := sha(p, r-1)
			if r == 0 {
				prev = h26SHA(nil)
			}
			m.Captures = append(m.Captures, archive.TailCapture{LogDir: "/var/lib/kafka/data", Topic: "orders", Partition: int32(p), TopicID: h26Topic,
				From: int64(r * 100), To: int64(r*100 + 100), PrevSHA256: prev, SHA256: sha(p, r), FirstOffset: int64(r), LastOffset: int64(r), MaxTimestamp: t0.UnixMilli(),
				Chunks: []archive.Chunk{{Offset: int64(p * 100), StoredSize: 100, RawSize: 100, CRC32C: "00000000", RawCRC32C: "00000000", Compression: "none"}}})
		}
		data, _ := json.Marshal(m)
		size = len(data)
		if err := b.Create(ctx, layout.TailManifestKey("c1", 1, int64(r+1), uid), bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	plan, err := restore.MakePlan(ctx, restore.NewSource(b, archive.DecodeOptions{}), layout, restore.Selection{Broker: -1}, 4)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	var kept runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&kept)
	t.Logf("plan retains %d MiB of heap (%d B per capture)", (kept.HeapAlloc-before.HeapAlloc)>>20, (kept.HeapAlloc-before.HeapAlloc)/(parts*rounds))
	t.Logf("%d manifests of %d captures (%d bytes each): plan in %v, %d MiB allocated, heap %d MiB", rounds, parts, size, took,
		(after.TotalAlloc-before.TotalAlloc)>>20, after.HeapAlloc>>20)
	if len(plan.Partitions) != parts {
		t.Fatalf("%d partitions planned", len(plan.Partitions))
	}
	for _, pp := range plan.Partitions[:10] {
		if pp.Tail == nil || pp.Tail.Captures != rounds || pp.LastOffset != rounds-1 {
			t.Fatalf("%s-%d: %+v", pp.Topic, pp.Partition, pp.Tail)
		}
	}
	runtime.KeepAlive(plan)
	if took > time.Minute {
		t.Fatalf("planning took %v", took)
	}
}
