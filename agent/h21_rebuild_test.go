package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// h21ToV2 rewrites every v1 segment manifest of b as the v2 manifest of the
// same files (at its v2 key, with chunks covering each file) and deletes
// the v1 one; it returns the v2 manifest keys.
func h21ToV2(t *testing.T, b uploader.Bucket, l archive.Layout) map[string]bool {
	t.Helper()
	ctx := context.Background()
	cat, err := archive.ListAll(ctx, b, l)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, v := range cat.Versions {
		data, err := uploader.ReadAll(ctx, b, v.Manifest.Key, archive.MaxManifestSize)
		if err != nil {
			t.Fatal(err)
		}
		m, err := archive.DecodeSegmentManifest(v.Manifest.Key, data)
		if err != nil {
			t.Fatal(err)
		}
		r := m.Ref()
		log := m.Files[0]
		m.Version, m.CreatedAt, m.SourceModTime = archive.ManifestVersionV2, time.Time{}, log.ModTime
		m.UploadID = archive.UploadID(r, log.Name, log.Size, log.ModTime, 0)
		r.ContentID = m.UploadID
		dir := l.SegmentDirV2(r)
		if m.Kind == archive.KindKRaftSnapshot {
			dir = l.SnapshotDirV2(r, m.SnapshotEpoch)
		}
		for i := range m.Files {
			f := &m.Files[i]
			f.Object, f.CRC32C, f.DataKey, f.Chunks = archive.StoredObject{}, "", l.DataKeyV2(dir, f.Name), nil
			for off := int64(0); off < f.Size; off += archive.DefaultChunkSize {
				n := min(f.Size-off, archive.DefaultChunkSize)
				f.Chunks = append(f.Chunks, archive.Chunk{Offset: off, StoredSize: n, RawSize: n, CRC32C: "00000000", RawCRC32C: "00000000", Compression: archive.CompressionNone})
			}
		}
		data, err = archive.EncodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		key := dir + archive.ManifestName
		if err := b.Create(ctx, key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, v.Manifest.Key); err != nil {
			t.Fatal(err)
		}
		out[key] = true
	}
	return out
}

// TestH21RebuildStateReadsV2Manifests: a fresh state dir is rebuilt from
// the bucket's v2 manifests too (format v2 agents write only those), so a
// lost state dir does not mean re-reading every archived segment.
func TestH21RebuildStateReadsV2Manifests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 3000}}}); err != nil {
		t.Fatal(err)
	}
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	newAgent := func() *Agent {
		cfg := Defaults()
		cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority = []string{dir}, "file://x", t.TempDir(), 0, false
		a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{}),
			slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := newAgent()
	rep, err := a.RunOnce(context.Background())
	a.Close()
	if err != nil || rep.Archived < 4 {
		t.Fatalf("first pass: %+v, %v", rep, err)
	}
	v2 := h21ToV2(t, b, archive.NewLayout(""))
	if len(v2) != rep.Archived {
		t.Fatalf("%d manifests rewritten, %d archived", len(v2), rep.Archived)
	}
	a = newAgent() // fresh state dir: rebuilt from the bucket
	defer a.Close()
	got := 0
	for _, e := range a.state.Entries() {
		if e.Status == statusArchived {
			got++
			if !v2[e.Manifest] || !strings.Contains(e.Manifest, "/segments/") && !strings.Contains(e.Manifest, "/snapshots/") {
				t.Errorf("state entry %s names manifest %q, not one of the v2 manifests", e.Key, e.Manifest)
			}
		}
	}
	if got != len(v2) {
		t.Fatalf("state rebuilt with %d archived segments, want the %d of the v2 manifests", got, len(v2))
	}
}
