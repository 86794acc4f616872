package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// bucketArchive is the Archive over an uploader.Bucket.
type bucketArchive struct {
	b     uploader.Bucket
	wopts archive.WriterOptions
}

// NewArchive adapts a bucket: files are stored in format v2 (one pass:
// hashed, chunked, compressed on every core, encrypted and streamed by an
// archive.FileWriter) with opts's compression, level and key; manifests
// are created verified. enc is unused since format v2 (kept so callers
// need not change).
func NewArchive(b uploader.Bucket, enc *archive.Encoder, opts archive.EncodeOptions) Archive {
	return &bucketArchive{b: b, wopts: archive.WriterOptions{Compression: opts.Compression, Level: opts.Level, Key: opts.Key,
		ContentType: opts.ContentType, Metadata: opts.Metadata}}
}

// PutFile stores exactly size bytes of src at key in format v2; the record
// has no Name or ModTime (the caller's).
func (a *bucketArchive) PutFile(ctx context.Context, key string, src io.Reader, size int64) (archive.FileRecord, error) {
	wo := a.wopts
	wo.SizeHint = size
	w, err := archive.NewFileWriter(ctx, a.b, key, wo)
	if err != nil {
		return archive.FileRecord{}, err
	}
	n, err := io.CopyBuffer(w, io.LimitReader(src, size), make([]byte, 256<<10))
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, expected %d: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		w.Abort()
		return archive.FileRecord{}, fmt.Errorf("put %s: %w", key, err)
	}
	return w.Close()
}

func (a *bucketArchive) Delete(ctx context.Context, key string) error { return a.b.Delete(ctx, key) }

func (a *bucketArchive) PutManifest(ctx context.Context, key string, data []byte) error {
	sum := sha256.Sum256(data)
	return uploader.CreateVerified(ctx, a.b, key, bytes.NewReader(data), int64(len(data)),
		uploader.PutOptions{SHA256: hex.EncodeToString(sum[:]), ContentType: "application/json"})
}

func (a *bucketArchive) Exists(ctx context.Context, key string) (bool, error) {
	return uploader.Exists(ctx, a.b, key)
}

func (a *bucketArchive) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	return a.b.List(ctx, prefix, fn)
}

func (a *bucketArchive) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	return uploader.ReadAll(ctx, a.b, key, max)
}
