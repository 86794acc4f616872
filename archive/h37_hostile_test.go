package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

// h37TinyChunks is a record of n adjacent 1-byte chunks in one object.
func h37TinyChunks(n int) FileRecord {
	rec := FileRecord{Name: "00000000000000000000.log", Size: int64(n), DataKey: "k.sv2", SHA256: strings.Repeat("0", 64)}
	rec.Chunks = make([]Chunk, n)
	for i := range rec.Chunks {
		rec.Chunks[i] = Chunk{Offset: int64(i), StoredSize: 1, RawSize: 1, CRC32C: "00000000", RawCRC32C: "00000000", Compression: CompressionNone}
	}
	return rec
}

// A hostile manifest with hundreds of thousands of tiny chunks (it fits in
// MaxManifestSize) must be planned in linear time, not hang the reader.
func TestH37TinyChunksPlanLinear(t *testing.T) {
	rec := h37TinyChunks(300000)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := planRanges(rec)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("planning 300000 chunks took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("planning 300000 tiny chunks did not finish in 5s (quadratic)")
	}
}

// A v2 manifest's data keys and chunk keys are where the reader GETs: a
// hostile or misplaced manifest must not send it to another version's
// objects, outside the layout, or through "..".
func TestH37ManifestKeysConfined(t *testing.T) {
	base := h21V2Manifest()
	dir := strings.TrimSuffix(base.Files[0].DataKey, base.Files[0].Name+".sv2")
	mkey := dir + ManifestName
	l := NewLayout("pre")
	pack := l.TailPackKey("c", 1, 7, "0123456789abcdef")
	other := strings.Replace(dir, "/00000000000000000000/", "/00000000000000000099/", 1)
	cases := []struct {
		name, key string
		edit      func(m *SegmentManifest)
		want      string // "" = valid
	}{
		{"valid", mkey, func(m *SegmentManifest) {}, ""},
		{"valid, any key", "k", func(m *SegmentManifest) {}, ""},
		{"chunk in a tail pack", mkey, func(m *SegmentManifest) { m.Files[0].Chunks[1].Key = pack; m.Files[0].Chunks[1].Offset = 5 }, ""},
		{"data key of another version", mkey, func(m *SegmentManifest) { m.Files[0].DataKey = other + m.Files[0].Name + ".sv2" }, "data_key"},
		{"data key of another file", mkey, func(m *SegmentManifest) { m.Files[0].DataKey = m.Files[1].DataKey }, "data_key"},
		{"data key with ..", "k", func(m *SegmentManifest) { m.Files[0].DataKey = dir + "../../x.sv2" }, "data_key"},
		{"chunk key with ..", mkey, func(m *SegmentManifest) { m.Files[0].Chunks[1].Key = "pre/v2/c/brokers/1/tails/../../../../etc.pack" }, "chunk 1"},
		{"chunk key not a pack", mkey, func(m *SegmentManifest) { m.Files[0].Chunks[1].Key = other + "00000000000000000000.log.sv2" }, "chunk 1"},
		{"chunk key another cluster's pack", mkey, func(m *SegmentManifest) { m.Files[0].Chunks[1].Key = l.TailPackKey("c2", 1, 7, "0123456789abcdef") }, "chunk 1"},
	}
	for _, c := range cases {
		m := h21V2Manifest()
		c.edit(m)
		data, err := EncodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		_, err = DecodeSegmentManifest(c.key, data)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted", c.name)
		case c.want != "" && (!strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.key)):
			t.Errorf("%s: error %q does not name %q and the manifest", c.name, err, c.want)
		}
	}
}

// Hostile stored bytes under a v2 record: a data object replaced by another
// of the same size, a chunk past the object's end, a chunk offset near
// int64 max. Each read fails with an error naming the object and the
// check, never a panic or a trusted wrong byte.
func TestH37OpenFileHostileObjects(t *testing.T) {
	ctx := context.Background()
	b, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20+77)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	key := "v2/c/topics/t/0/x/segments/00000000000000000000/1-0123456789abcdef/00000000000000000000.log.sv2"
	rec := h22WriteV2(t, b, key, data, WriterOptions{Compression: CompressionNone, ChunkSize: 1 << 20, Name: "00000000000000000000.log"})
	if got, err := h22ReadFile(t, b, rec, DecodeOptions{}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clean read: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(r *FileRecord)
		want []string
	}{
		{"past the end", func(r *FileRecord) { r.Chunks[3].Offset += 10 }, []string{key, "stored size"}},
		{"offset near int64 max", func(r *FileRecord) { r.Chunks[1].Offset = math.MaxInt64 - 5 }, []string{key, "stored size", "range past the end"}},
		{"offset at int64 max, other key", func(r *FileRecord) {
			r.Chunks[1].Key, r.Chunks[1].Offset = "v2/c/brokers/1/tails/00000000000000000001-0123456789abcdef.pack", math.MaxInt64
		}, []string{"tails"}},
	} {
		r := rec
		r.Chunks = append([]Chunk(nil), rec.Chunks...)
		c.edit(&r)
		_, err := h22ReadFile(t, b, r, DecodeOptions{})
		t.Logf("%s: %v", c.name, err)
		if err == nil {
			t.Errorf("%s: read succeeded", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", c.name, err, w)
			}
		}
	}
	// The same size, other bytes.
	other := append([]byte(nil), data...)
	other[2<<20+5] ^= 1
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	h22WriteV2(t, b, key, other, WriterOptions{Compression: CompressionNone, ChunkSize: 1 << 20, Name: "00000000000000000000.log"})
	_, err = h22ReadFile(t, b, rec, DecodeOptions{})
	var ie *IntegrityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "chunk 2") || !strings.Contains(err.Error(), "crc32c") || !strings.Contains(err.Error(), key) {
		t.Fatalf("replaced object: %v", err)
	}
}

// Encryption: a reader without the key says which key and object; a
// rotated key list (new key first) still reads; a chunk whose key_id names
// another key the reader has fails authentication, never yields bytes.
func TestH37WrongKey(t *testing.T) {
	b, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(c byte) *Key {
		k, err := ParseCryptKey(bytes.Repeat([]byte{c}, KeySize))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, bk := mk(1), mk(2)
	data := bytes.Repeat([]byte("segvault h37 "), 200000)
	key := "v2/c/x.sv2"
	rec := h22WriteV2(t, b, key, data, WriterOptions{ChunkSize: 1 << 20, Key: a, Name: "f"})
	if _, err := h22ReadFile(t, b, rec, DecodeOptions{Keys: []*Key{bk}}); !errors.Is(err, uploader.ErrUnknownKey) ||
		!strings.Contains(err.Error(), a.ID()) || !strings.Contains(err.Error(), key) {
		t.Fatalf("without the key: %v", err)
	}
	if got, err := h22ReadFile(t, b, rec, DecodeOptions{Keys: []*Key{bk, a}}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("rotated keys: %v", err)
	}
	r := rec
	r.Chunks = append([]Chunk(nil), rec.Chunks...)
	r.Chunks[1].KeyID = bk.ID()
	_, err = h22ReadFile(t, b, r, DecodeOptions{Keys: []*Key{bk, a}})
	var ie *IntegrityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "chunk 1") {
		t.Fatalf("key_id of another key: %v", err)
	}
	t.Log(err)
}

// A version 1 manifest whose files carry v2 fields (data_key, chunks) would
// be read as v2 (FileRecord.IsV2) without any of the v2 checks: rejected.
func TestH37V1ManifestWithV2Records(t *testing.T) {
	m := h21V2Manifest()
	m.Version, m.UploadID, m.SourceModTime, m.CreatedAt = ManifestVersion, "", time.Time{}, time.Now().UTC()
	m.Files[0].DataKey = "../../elsewhere.sv2"
	data, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeSegmentManifest("k", data); err == nil || !strings.Contains(err.Error(), "version 1") || !strings.Contains(err.Error(), "k") {
		t.Fatalf("v1 manifest with v2 records: %v", err)
	}
}

// A record of many tiny chunks must not cost a chunk-sized buffer per
// chunk: 100 one-byte chunks are read with little memory.
func TestH37TinyChunksMemory(t *testing.T) {
	ctx := context.Background()
	b, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	data := make([]byte, n)
	rec := FileRecord{Name: "f", Size: n, DataKey: "v2/c/tiny.sv2", Chunks: make([]Chunk, n)}
	for i := range data {
		data[i] = byte(i)
		crc := formatCRC(crc32.Checksum(data[i:i+1], castagnoli))
		rec.Chunks[i] = Chunk{Offset: int64(i), StoredSize: 1, RawSize: 1, CRC32C: crc, RawCRC32C: crc, Compression: CompressionNone}
	}
	sum := sha256.Sum256(data)
	rec.SHA256 = hex.EncodeToString(sum[:])
	if err := b.Create(ctx, rec.DataKey, bytes.NewReader(data), n, uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := h22ReadFile(t, b, rec, DecodeOptions{})
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
		t.Fatalf("reading %d one-byte chunks allocated %d MiB", n, d>>20)
	}
}
