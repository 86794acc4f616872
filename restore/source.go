package restore

import (
	"context"
	"io"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// bucketSource is the Source over an uploader.BucketReader.
type bucketSource struct {
	b    uploader.BucketReader
	opts archive.DecodeOptions
}

// NewSource reads the archive from b; opts carries client-side keys.
func NewSource(b uploader.BucketReader, opts archive.DecodeOptions) Source {
	return &bucketSource{b: b, opts: opts}
}

func (s *bucketSource) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	return s.b.List(ctx, prefix, fn)
}

func (s *bucketSource) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	return uploader.ReadAll(ctx, s.b, key, max)
}

// Open reads one archived file of either format (archive.OpenFile: v1 one
// object, v2 chunks fetched with ranged reads and decoded in parallel),
// verified.
func (s *bucketSource) Open(ctx context.Context, rec archive.FileRecord) (io.ReadCloser, error) {
	if isTailRecord(rec) {
		return openTailRecord(ctx, s.b, rec, s.opts.Keys), nil
	}
	return archive.OpenFile(ctx, s.b, rec, s.opts)
}

// objectKey names the object holding rec's bytes, for errors.
func objectKey(rec archive.FileRecord) string {
	if rec.IsV2() {
		return rec.DataKey
	}
	return rec.Object.Key
}
