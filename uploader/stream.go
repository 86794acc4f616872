package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

// ObjectStream is an upload whose stored size is not known when it starts
// (archive format v2 writes a file's chunks while it reads the file). Parts
// are numbered 1, 2, ... in object order; every part but the last must be at
// least MinPartSize bytes. WritePart may be called concurrently for
// different parts, and returns when the part is stored (with its CRC-32C,
// hex, verified by the server where the store can). The object appears only
// on Complete, create-only (ErrExists if an object is already at the key),
// never partially; Abort discards the parts.
type ObjectStream interface {
	WritePart(ctx context.Context, n int, data []byte, crc32c string) error
	Complete(ctx context.Context) error
	Abort(ctx context.Context) error
}

// ErrRangeEnd: a ranged read reaches past the end of the object (for an
// archive reader, the object is shorter than its manifest says).
var ErrRangeEnd = errors.New("range past the end of the object")

// MinPartSize is the smallest part but the last S3 accepts.
const MinPartSize = 5 << 20

// StreamCreator is implemented by stores with a native streaming upload.
type StreamCreator interface {
	CreateStream(ctx context.Context, key string, opts PutOptions) (ObjectStream, error)
}

// RangeGetter is implemented by stores with native ranged reads.
type RangeGetter interface {
	// GetRange reads n bytes of key from byte off. ErrNotFound if the object
	// does not exist; a range past the end is an error.
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
}

// CreateStream starts a streaming upload to b: b's own when it has one,
// else parts are staged in a temp file and created in one Create on
// Complete (opts.SHA256 and CRC32C are then left empty).
func CreateStream(ctx context.Context, b BucketWriter, key string, opts PutOptions) (ObjectStream, error) {
	if sc, ok := b.(StreamCreator); ok {
		return sc.CreateStream(ctx, key, opts)
	}
	return &stagedStream{b: b, key: key, opts: opts, parts: map[int][]byte{}}, nil
}

// stagedStream is the generic ObjectStream: parts kept until Complete.
type stagedStream struct {
	b     BucketWriter
	key   string
	opts  PutOptions
	mu    sync.Mutex
	parts map[int][]byte
	done  bool
}

func (s *stagedStream) WritePart(ctx context.Context, n int, data []byte, crc32c string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("create %s: part %d after Complete or Abort", s.key, n)
	}
	if _, dup := s.parts[n]; dup || n < 1 {
		return fmt.Errorf("create %s: part %d written twice or out of range", s.key, n)
	}
	s.parts[n] = append([]byte(nil), data...)
	return nil
}

func (s *stagedStream) Complete(ctx context.Context) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return fmt.Errorf("create %s: Complete after Complete or Abort", s.key)
	}
	s.done = true
	parts := s.parts
	s.parts = nil
	s.mu.Unlock()
	ns := make([]int, 0, len(parts))
	for n := range parts {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	f, err := os.CreateTemp("", "segvault-stream-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", s.key, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var size int64
	for i, n := range ns {
		if n != i+1 {
			return fmt.Errorf("create %s: part %d missing", s.key, i+1)
		}
		m, err := f.Write(parts[n])
		if err != nil {
			return fmt.Errorf("create %s: stage: %w", s.key, err)
		}
		size += int64(m)
	}
	opts := s.opts
	opts.SHA256, opts.CRC32C = "", ""
	return s.b.Create(ctx, s.key, io.NewSectionReader(f, 0, size), size, opts)
}

func (s *stagedStream) Abort(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done, s.parts = true, nil
	return nil
}

// GetRange reads n bytes of key from off: b's own ranged read when it has
// one, else a Get that skips to off.
func GetRange(ctx context.Context, b BucketReader, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("get %s: bad range %d+%d", key, off, n)
	}
	if rg, ok := b.(RangeGetter); ok {
		return rg.GetRange(ctx, key, off, n)
	}
	rc, info, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if off+n > info.Size {
		rc.Close()
		return nil, fmt.Errorf("get %s: range %d+%d, object has %d bytes: %w", key, off, n, info.Size, ErrRangeEnd)
	}
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		rc.Close()
		return nil, fmt.Errorf("get %s: skip to %d: %w", key, off, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, n), rc}, nil
}
