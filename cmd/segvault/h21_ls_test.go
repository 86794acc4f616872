package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// TestH21LsReadsV2Manifests: ls lists partitions whose manifests are under
// the v2 root (one listing of both roots) exactly as their v1 copies.
func TestH21LsReadsV2Manifests(t *testing.T) {
	tmp := t.TempDir()
	logs := filepath.Join(tmp, "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: logs, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 2000}}}); err != nil {
		t.Fatal(err)
	}
	bucketDir := filepath.Join(tmp, "bucket")
	if out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--bucket", "file://"+bucketDir, "--state-dir", filepath.Join(tmp, "state")); code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	ls := func() []map[string]any {
		out, errOut, code := runSegvault(t, "ls", "--json", "--bucket", "file://"+bucketDir)
		if code != 0 {
			t.Fatalf("ls: exit %d\n%s\n%s", code, out, errOut)
		}
		var v []map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		for _, p := range v {
			delete(p, "stored_bytes")
		}
		return v
	}
	before := ls()
	ctx := context.Background()
	b, err := uploader.NewLocal(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	l := archive.NewLayout("")
	cat, err := archive.ListAll(ctx, b, l)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, v := range cat.Versions {
		if v.Key.Partition != 1 {
			continue
		}
		data, _ := uploader.ReadAll(ctx, b, v.Manifest.Key, archive.MaxManifestSize)
		m, err := archive.DecodeSegmentManifest(v.Manifest.Key, data)
		if err != nil {
			t.Fatal(err)
		}
		r, log := m.Ref(), m.Files[0]
		m.Version, m.CreatedAt, m.SourceModTime = archive.ManifestVersionV2, time.Time{}, log.ModTime
		m.UploadID = archive.UploadID(r, log.Name, log.Size, log.ModTime, 1)
		r.ContentID = m.UploadID
		dir := l.SegmentDirV2(r)
		for i := range m.Files {
			f := &m.Files[i]
			f.Object, f.CRC32C, f.DataKey, f.Chunks = archive.StoredObject{}, "", l.DataKeyV2(dir, f.Name), nil
			if f.Size > 0 {
				f.Chunks = []archive.Chunk{{StoredSize: f.Size, RawSize: f.Size, CRC32C: "00000000", RawCRC32C: "00000000", Compression: archive.CompressionNone}}
			}
		}
		data, _ = archive.EncodeManifest(m)
		if err := b.Create(ctx, dir+archive.ManifestName, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, v.Manifest.Key); err != nil {
			t.Fatal(err)
		}
		moved++
	}
	if moved == 0 {
		t.Fatal("nothing moved")
	}
	after := ls()
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if !bytes.Equal(bj, aj) || !strings.Contains(string(aj), `"partition":1`) {
		t.Fatalf("ls with partition 1 under v2:\n%s\nwant as with v1:\n%s", aj, bj)
	}
}
