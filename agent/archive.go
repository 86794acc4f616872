package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// bucketArchive is the Archive over an uploader.Bucket.
type bucketArchive struct {
	b    uploader.Bucket
	enc  *archive.Encoder
	opts archive.EncodeOptions
}

// NewArchive adapts a bucket: files go through enc (compression, hashing,
// encryption) with opts; manifests are created verified.
func NewArchive(b uploader.Bucket, enc *archive.Encoder, opts archive.EncodeOptions) Archive {
	return &bucketArchive{b: b, enc: enc, opts: opts}
}

func (a *bucketArchive) PutFile(ctx context.Context, key string, src io.Reader, size int64) (archive.FileRecord, error) {
	r, err := a.enc.PutFile(ctx, a.b, key, src, size, a.opts)
	if err != nil {
		return archive.FileRecord{}, err
	}
	return r.FileRecord("", time.Time{}), nil
}

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
