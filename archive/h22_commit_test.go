package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

const h22Fixture = "../../shared/fixtures/kafka-real/NikhilDighe9975__kafka_setup/kafka-logs/__consumer_offsets-12"

// h22Store is a CommitStore over a bucket (what the agent's Archive does).
type h22Store struct {
	b        uploader.Bucket
	opts     WriterOptions
	failAt   string // PutFile of a key with this suffix fails
	noDelete bool   // Delete fails (a store that grants no delete)
}

func (s *h22Store) Exists(ctx context.Context, key string) (bool, error) {
	return uploader.Exists(ctx, s.b, key)
}
func (s *h22Store) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	return s.b.List(ctx, prefix, fn)
}
func (s *h22Store) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	return uploader.ReadAll(ctx, s.b, key, max)
}
func (s *h22Store) Delete(ctx context.Context, key string) error {
	if s.noDelete {
		return errors.New("access denied")
	}
	return s.b.Delete(ctx, key)
}
func (s *h22Store) PutFile(ctx context.Context, key string, src io.Reader, size int64) (FileRecord, error) {
	if s.failAt != "" && strings.HasSuffix(key, s.failAt) {
		return FileRecord{}, errors.New("injected upload failure")
	}
	w, err := NewFileWriter(ctx, s.b, key, s.opts)
	if err != nil {
		return FileRecord{}, err
	}
	if _, err := io.Copy(w, io.LimitReader(src, size)); err != nil {
		w.Abort()
		return FileRecord{}, err
	}
	return w.Close()
}
func (s *h22Store) PutManifest(ctx context.Context, key string, data []byte) error {
	sum := sha256.Sum256(data)
	return uploader.CreateVerified(ctx, s.b, key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{SHA256: hex.EncodeToString(sum[:])})
}

// h22Counter counts the bytes read through a ReaderAt.
type h22Counter struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *h22Counter) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func h22Request(t *testing.T, logData []byte) (CommitRequest, *h22Counter) {
	t.Helper()
	mt := time.Unix(1700000000, 0).UTC()
	cnt := &h22Counter{r: bytes.NewReader(logData)}
	req := CommitRequest{
		Layout: Layout{Prefix: "pfx/"},
		Manifest: SegmentManifest{Kind: KindSegment, ClusterID: "c1", BrokerID: 3, LogDir: "/kafka", Topic: "__consumer_offsets",
			Partition: 12, TopicID: "tid", BaseOffset: 0, NextSegmentBase: 862, Agent: "segvault test", Validation: "shallow",
			PartitionState: &PartitionState{CapturedAt: mt}},
		Files: []CommitFile{{Name: "00000000000000000000.log", Path: "fixture.log", R: cnt, Size: int64(len(logData)), ModTime: mt, Inode: 7}},
	}
	for _, name := range []string{"00000000000000000000.index", "00000000000000000000.timeindex"} {
		data, err := os.ReadFile(filepath.Join(h22Fixture, name))
		if err != nil {
			t.Fatal(err)
		}
		req.Files = append(req.Files, CommitFile{Name: name, Path: name, R: bytes.NewReader(data), Size: int64(len(data)), ModTime: mt, Inode: 8})
	}
	return req, cnt
}

func h22Keys(t *testing.T, b uploader.Bucket) []string {
	t.Helper()
	var keys []string
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestH22CommitOnePass(t *testing.T) {
	ctx := context.Background()
	logData, err := os.ReadFile(filepath.Join(h22Fixture, "00000000000000000000.log"))
	if err != nil {
		t.Fatal(err)
	}
	b := newTestLocal(t)
	st := &h22Store{b: b}
	req, cnt := h22Request(t, logData)
	res, err := Commit(ctx, st, req)
	if err != nil || res.Status != CommitArchived {
		t.Fatalf("%+v %v", res, err)
	}
	if cnt.n.Load() != int64(len(logData)) {
		t.Fatalf("the .log was read %d bytes for %d: not one pass", cnt.n.Load(), len(logData))
	}
	m := res.Manifest
	sum := sha256.Sum256(logData)
	if m.Version != ManifestVersionV2 || m.ContentID != hex.EncodeToString(sum[:])[:12] || m.UploadID == "" || !m.CreatedAt.IsZero() ||
		!strings.Contains(res.ManifestKey, "/v2/c1/topics/__consumer_offsets/12/tid/segments/00000000000000000000/3-"+m.UploadID+"/") ||
		len(m.Files) != 3 || m.Files[0].Name != "00000000000000000000.log" || m.Summary == nil || m.NextSegmentBase != 862 {
		t.Fatalf("manifest %s: %+v", res.ManifestKey, m)
	}
	data, _ := mustGet(t, b, res.ManifestKey)
	dm, err := DecodeSegmentManifest(res.ManifestKey, data)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range dm.Files {
		got, err := h22ReadFile(t, b, f, DecodeOptions{})
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if i == 0 && !bytes.Equal(got, logData) {
			t.Fatal(".log differs")
		}
	}
	// Already archived: one Stat, nothing read.
	req2, cnt2 := h22Request(t, logData)
	res, err = Commit(ctx, st, req2)
	if err != nil || res.Status != CommitAlready || cnt2.n.Load() != 0 {
		t.Fatalf("second commit: %+v %v, %d bytes read", res, err, cnt2.n.Load())
	}
	// The same bytes with another mtime (another upload id): the same
	// version, "already", and its data objects are removed again.
	before := h22Keys(t, b)
	req4, _ := h22Request(t, logData)
	req4.Files[0].ModTime = req4.Files[0].ModTime.Add(time.Hour)
	res4, err := Commit(ctx, st, req4)
	if err != nil || res4.Status != CommitAlready || res4.ManifestKey != res.ManifestKey {
		t.Fatalf("same content, new mtime: %+v %v", res4, err)
	}
	if after := h22Keys(t, b); !slices.Equal(before, after) {
		t.Fatalf("objects changed: %v -> %v", before, after)
	}
	// The same file state into another store: a byte-identical manifest.
	b2 := newTestLocal(t)
	req3, _ := h22Request(t, logData)
	res3, err := Commit(ctx, &h22Store{b: b2}, req3)
	if err != nil {
		t.Fatal(err)
	}
	data2, _ := mustGet(t, b2, res3.ManifestKey)
	if res3.ManifestKey != res.ManifestKey || !bytes.Equal(data, data2) {
		t.Fatalf("manifests differ:\n%s\n%s", data, data2)
	}
}

func TestH22CommitCorruptLeavesNothing(t *testing.T) {
	ctx := context.Background()
	logData, err := os.ReadFile(filepath.Join(h22Fixture, "00000000000000000000.log"))
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(logData)
	bad[len(bad)/2] ^= 0x40
	b := newTestLocal(t)
	req, _ := h22Request(t, bad)
	res, err := Commit(ctx, &h22Store{b: b}, req)
	if err != nil || res.Status != CommitCorrupt || res.Detail == "" {
		t.Fatalf("%+v %v", res, err)
	}
	if keys := h22Keys(t, b); len(keys) != 0 {
		t.Fatalf("a corrupt segment left objects: %v", keys)
	}
	// The base offset check (outside the CRC) after a full read: also nothing.
	req, _ = h22Request(t, logData)
	req.Manifest.NextSegmentBase = 10
	res, err = Commit(ctx, &h22Store{b: b}, req)
	if err != nil || res.Status != CommitCorrupt {
		t.Fatalf("%+v %v", res, err)
	}
	if keys := h22Keys(t, b); len(keys) != 0 {
		t.Fatalf("a segment failing the next-base check left objects: %v", keys)
	}
	// An upload failure of a later file: the .log's object goes too.
	req, _ = h22Request(t, logData)
	res, err = Commit(ctx, &h22Store{b: b, failAt: ".timeindex.sv2"}, req)
	if err == nil {
		t.Fatalf("commit with a failed upload: %+v", res)
	}
	if keys := h22Keys(t, b); len(keys) != 0 {
		t.Fatalf("a failed commit left objects: %v", keys)
	}
}

func TestH22CommitReplacesCrashedAttempt(t *testing.T) {
	ctx := context.Background()
	logData, err := os.ReadFile(filepath.Join(h22Fixture, "00000000000000000000.log"))
	if err != nil {
		t.Fatal(err)
	}
	b := newTestLocal(t)
	req, _ := h22Request(t, logData)
	ref := SegmentRef{Cluster: "c1", Topic: "__consumer_offsets", Partition: 12, TopicID: "tid", BaseOffset: 0, Broker: 3}
	ref.ContentID = UploadID(ref, req.Files[0].Name, req.Files[0].Size, req.Files[0].ModTime, req.Files[0].Inode)
	dir := req.Layout.SegmentDirV2(ref)
	// A crash after the .log's object: a half-written attempt (other bytes).
	mustCreate(t, b, req.Layout.DataKeyV2(dir, "00000000000000000000.log"), []byte("partial"), uploader.PutOptions{})
	mustCreate(t, b, req.Layout.DataKeyV2(dir, "00000000000000000000.index"), []byte("partial"), uploader.PutOptions{})
	res, err := Commit(ctx, &h22Store{b: b}, req)
	if err != nil || res.Status != CommitArchived {
		t.Fatalf("%+v %v", res, err)
	}
	got, err := h22ReadFile(t, b, res.Manifest.Files[0], DecodeOptions{})
	if err != nil || !bytes.Equal(got, logData) {
		t.Fatalf("rewritten .log: %v", err)
	}

	// Without delete permission: the leftovers stay, the commit goes under
	// an alternate upload id, and a retry finds it there.
	b2 := newTestLocal(t)
	mustCreate(t, b2, req.Layout.DataKeyV2(dir, "00000000000000000000.log"), []byte("partial"), uploader.PutOptions{})
	st := &h22Store{b: b2, noDelete: true}
	res, err = Commit(ctx, st, req)
	if err != nil || res.Status != CommitArchived || strings.HasPrefix(res.ManifestKey, dir) {
		t.Fatalf("no-delete store: %+v %v", res, err)
	}
	again, err := Commit(ctx, st, req)
	if err != nil || again.Status != CommitAlready || again.ManifestKey != res.ManifestKey {
		t.Fatalf("retry on a no-delete store: %+v %v", again, err)
	}
}

func TestH22CommitSalvageTornActive(t *testing.T) {
	ctx := context.Background()
	logData, err := os.ReadFile(filepath.Join(h22Fixture, "00000000000000000000.log"))
	if err != nil {
		t.Fatal(err)
	}
	torn := append(slices.Clone(logData), make([]byte, 4096)...) // a zero tail of an unclean stop
	b := newTestLocal(t)
	req, _ := h22Request(t, torn)
	req.Active, req.Manifest.NextSegmentBase = true, -1
	res, err := Commit(ctx, &h22Store{b: b}, req)
	if err != nil || res.Status != CommitArchived || !res.Truncated {
		t.Fatalf("%+v %v", res, err)
	}
	m := res.Manifest
	if m.Files[0].Size != int64(len(logData)) || len(m.Files) != 1 || m.NextSegmentBase != 862 {
		t.Fatalf("salvaged manifest: %d files, .log %d bytes, next %d", len(m.Files), m.Files[0].Size, m.NextSegmentBase)
	}
	got, err := h22ReadFile(t, b, m.Files[0], DecodeOptions{})
	if err != nil || !bytes.Equal(got, logData) {
		t.Fatalf("salvaged .log: %v", err)
	}
}
