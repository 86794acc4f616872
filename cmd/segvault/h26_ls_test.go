package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// h26PutTail packs data[from:to] of a real segment as one tail capture.
func h26PutTail(t *testing.T, store uploader.Bucket, cluster string, seq int64, at time.Time, topic, topicID string, data []byte, from, to, first, last, maxTS int64) {
	t.Helper()
	layout := archive.NewLayout("")
	uid := "00000000000000a" + string(rune('0'+seq))
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	pack, ch, err := archive.NewChunkCodec().EncodeChunk(nil, data[from:to], archive.CompressionZstd, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := archive.TailManifest{Format: archive.TailManifestFormat, Version: archive.ManifestVersionV2, ClusterID: cluster, BrokerID: 0, Seq: seq,
		UploadID: uid, PackKey: layout.TailPackKey(cluster, 0, seq, uid), PackSize: int64(len(pack)), CapturedAt: at, Agent: "h26 test",
		Captures: []archive.TailCapture{{LogDir: "/data", Topic: topic, TopicID: topicID, From: from, To: to, PrevSHA256: sum(data[:from]),
			SHA256: sum(data[:to]), FirstOffset: first, LastOffset: last, MaxTimestamp: maxTS, Chunks: []archive.Chunk{ch}}}}
	ctx := context.Background()
	if err := store.Create(ctx, m.PackKey, bytes.NewReader(pack), int64(len(pack)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(m)
	if err := store.Create(ctx, layout.TailManifestKey(cluster, 0, seq, uid), bytes.NewReader(js), int64(len(js)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestH26LsAndRestoreTail: an archive holding only the tail captures of a
// partition that never rolled (a real one): ls shows its newest restorable
// offset and time, restore brings the active segment back byte for byte,
// restore --rolled-only finds nothing.
func TestH26LsAndRestoreTail(t *testing.T) {
	tmp := t.TempDir()
	data, err := os.ReadFile(filepath.Join(fixture(t, biggerBrain), "lsx1-0", "00000000000000000000.log"))
	if err != nil {
		t.Fatal(err)
	}
	bucketDir := filepath.Join(tmp, "bucket")
	store, err := uploader.NewLocal(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC)
	const cluster, id = "1PEpoQSRThK-PWVK_M7NCg", "nigi0dJNRASJVYh5eRn0Vg"
	// lsx1-0 (catalog): 14 batches, offsets 0..13, one record each; split after the fifth batch.
	cut := int64(0)
	for i := 0; i < 5; i++ { // five batches
		cut += 12 + int64(uint32(data[cut+8])<<24|uint32(data[cut+9])<<16|uint32(data[cut+10])<<8|uint32(data[cut+11]))
	}
	h26PutTail(t, store, cluster, 1, at, "lsx1", id, data, 0, cut, 0, 4, 1721034021890)
	h26PutTail(t, store, cluster, 2, at.Add(time.Minute), "lsx1", id, data, cut, int64(len(data)), 5, 13, 1721035451637)
	bucket := "file://" + bucketDir

	out, errOut, code := runSegvault(t, "ls", "--json", "--bucket", bucket)
	if code != 0 {
		t.Fatalf("ls --json: exit %d\n%s\n%s", code, out, errOut)
	}
	var parts []lsPartition
	if err := json.Unmarshal([]byte(out), &parts); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	if len(parts) != 1 || parts[0].RestorableOffset == nil || *parts[0].RestorableOffset != 13 || parts[0].RestorableFrom != "tail-capture" ||
		parts[0].RestorableTime != time.UnixMilli(1721035451637).UTC().Format(time.RFC3339Nano) || parts[0].CapturedAt != at.Add(time.Minute).Format(time.RFC3339Nano) ||
		parts[0].Stored == 0 {
		t.Errorf("ls --json:\n%s", out)
	}
	out, _, code = runSegvault(t, "ls", "--bucket", bucket)
	if code != 0 || !strings.Contains(out, "0..13") {
		t.Errorf("ls: exit %d\n%s", code, out)
	}

	target := filepath.Join(tmp, "restored")
	out, errOut, code = runSegvault(t, "restore", "--rolled-only", "--bucket", bucket, "--target", target)
	if code != 1 || !strings.Contains(errOut, "nothing") {
		t.Errorf("restore --rolled-only: exit %d, want 1 (nothing rolled)\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = runSegvault(t, "restore", "--dry-run", "--to-offset", "6", "--bucket", bucket, "--target", target)
	if code != 0 || !strings.Contains(out, "lsx1-0: cut after last offset 6") {
		t.Errorf("restore --dry-run --to-offset 6: exit %d, want the exact cut inside the captured segment\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = runSegvault(t, "restore", "--bucket", bucket, "--target", target)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	got, err := os.ReadFile(filepath.Join(target, "lsx1-0", "00000000000000000000.log"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("restored lsx1-0 differs from the broker's active segment (%d bytes, want %d): %v", len(got), len(data), err)
	}
}
