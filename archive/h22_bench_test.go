package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"testing"

	"github.com/segvault/segvault/uploader"
)

// h22MemBucket keeps objects in memory, with native streams and ranges, so
// the v2 benchmarks measure the pipeline, not a store.
type h22MemBucket struct {
	uploader.Bucket
	mu   sync.Mutex
	objs map[string][]byte
}

func (m *h22MemBucket) Create(_ context.Context, key string, r io.Reader, _ int64, _ uploader.PutOptions) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objs == nil {
		m.objs = map[string][]byte{}
	}
	if _, ok := m.objs[key]; ok {
		return uploader.ErrExists
	}
	m.objs[key] = data
	return nil
}

func (m *h22MemBucket) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

type h22MemStream struct {
	m     *h22MemBucket
	key   string
	mu    sync.Mutex
	parts map[int][]byte
}

func (m *h22MemBucket) CreateStream(_ context.Context, key string, _ uploader.PutOptions) (uploader.ObjectStream, error) {
	return &h22MemStream{m: m, key: key, parts: map[int][]byte{}}, nil
}

func (s *h22MemStream) WritePart(_ context.Context, n int, data []byte, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parts[n] = bytes.Clone(data)
	return nil
}

func (s *h22MemStream) Complete(ctx context.Context) error {
	var all []byte
	for i := 1; i <= len(s.parts); i++ {
		all = append(all, s.parts[i]...)
	}
	return s.m.Create(ctx, s.key, bytes.NewReader(all), int64(len(all)), uploader.PutOptions{})
}

func (s *h22MemStream) Abort(context.Context) error { return nil }

func (m *h22MemBucket) GetRange(_ context.Context, key string, off, n int64) (io.ReadCloser, error) {
	m.mu.Lock()
	data, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return nil, uploader.ErrNotFound
	}
	if off+n > int64(len(data)) {
		return nil, uploader.ErrRangeEnd
	}
	return io.NopCloser(bytes.NewReader(data[off : off+n])), nil
}

var h22BenchModes = []struct {
	name string
	opts func(b *testing.B) WriterOptions
}{
	{"auto", func(*testing.B) WriterOptions { return WriterOptions{} }},
	{"none", func(*testing.B) WriterOptions { return WriterOptions{Compression: CompressionNone} }},
	{"auto-enc", func(b *testing.B) WriterOptions { return WriterOptions{Key: testKey(b, 1)} }},
}

// BenchmarkWriteV2 is the one-pass writer without a store (SHA-256,
// chunking, zstd on every core, CRC-32C, AES-GCM): compare with
// BenchmarkV2Floor.
func BenchmarkWriteV2(b *testing.B) {
	for _, dname := range []string{"compressible", "incompressible"} {
		data := benchData[dname]()
		for _, mode := range h22BenchModes {
			b.Run(fmt.Sprintf("%s/%s", dname, mode.name), func(b *testing.B) {
				opts := mode.opts(b)
				b.SetBytes(int64(len(data)))
				done := cpuMeter(b)
				for i := 0; b.Loop(); i++ {
					w, err := NewFileWriter(context.Background(), nullStreamBucket{}, fmt.Sprint(i), opts)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.Write(data); err != nil {
						b.Fatal(err)
					}
					if _, err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				done()
			})
		}
	}
}

// BenchmarkOpenFileV2 reads a v2 file back from memory (ranges, parallel
// decode, CRC-32C per chunk, SHA-256 once).
func BenchmarkOpenFileV2(b *testing.B) {
	for _, dname := range []string{"compressible", "incompressible"} {
		data := benchData[dname]()
		for _, mode := range h22BenchModes {
			b.Run(fmt.Sprintf("%s/%s", dname, mode.name), func(b *testing.B) {
				opts := mode.opts(b)
				mb := &h22MemBucket{}
				rec := h22WriteV2(b, mb, "f.sv2", data, opts)
				dopts := DecodeOptions{Keys: []*Key{opts.Key}}
				if opts.Key == nil {
					dopts.Keys = nil
				}
				buf := make([]byte, 256<<10)
				b.SetBytes(int64(len(data)))
				done := cpuMeter(b)
				for b.Loop() {
					rc, err := OpenFile(context.Background(), mb, rec, dopts)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
				done()
			})
		}
	}
}

// BenchmarkV2Floor is the least any one-pass archive does per byte: CRC-32C
// and SHA-256 of the same bytes, in one goroutine.
func BenchmarkV2Floor(b *testing.B) {
	data := benchData["incompressible"]()
	b.SetBytes(int64(len(data)))
	done := cpuMeter(b)
	defer done()
	for b.Loop() {
		h := sha256.New()
		var c uint32
		for p := data; len(p) > 0; {
			k := min(len(p), 1<<20)
			h.Write(p[:k])
			c = crc32.Update(c, castagnoli, p[:k])
			p = p[k:]
		}
		_ = h.Sum(nil)
		_ = c
	}
}
