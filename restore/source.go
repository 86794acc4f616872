package restore

import (
	"context"
	"io"

	"github.com/segvault/segvault/uploader"
)

// bucketSource is the Source over an uploader.BucketReader.
type bucketSource struct {
	b    uploader.BucketReader
	opts uploader.DecodeOptions
}

// NewSource reads the archive from b; opts carries client-side keys.
func NewSource(b uploader.BucketReader, opts uploader.DecodeOptions) Source {
	return &bucketSource{b: b, opts: opts}
}

func (s *bucketSource) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	return s.b.List(ctx, prefix, fn)
}

func (s *bucketSource) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	return uploader.ReadAll(ctx, s.b, key, max)
}

func (s *bucketSource) Open(ctx context.Context, rec uploader.FileRecord) (io.ReadCloser, error) {
	return uploader.OpenVerified(ctx, s.b, rec, s.opts)
}
