// Package uploader is segvault's transport: the Bucket interface and its two
// stores (S3 through minio-go, and a local directory), retries with one
// backoff schedule and the IsTransient classifier, rate limits, and
// create-only writes (CreateVerified: identical content is success, anything
// else ErrConflict). It knows nothing about Kafka or the archive format: keys,
// manifests, encoding and the commit protocol are in package archive.
package uploader

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists: Create found an object already at the key (raw store
	// answer; CreateVerified turns it into success or ErrConflict).
	ErrExists = errors.New("object already exists")
	// ErrConflict: an object exists at the key with different content. It is
	// never overwritten.
	ErrConflict = errors.New("object exists with different content")
	// ErrIntegrity: an object's bytes do not match what its manifest records.
	ErrIntegrity = errors.New("object failed verification")
	// ErrUnknownKey: an object is encrypted with a key that is not configured.
	ErrUnknownKey = errors.New("encryption key not configured")
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	ModTime  time.Time
	Metadata map[string]string // user metadata (lower-case keys, no x-amz-meta- prefix)
	// ETag identifies this version of the object for ReplaceIfMatch (S3:
	// the server's ETag without quotes; Local: mtime and size).
	ETag string
}

// PutOptions describe the object being created.
type PutOptions struct {
	// SHA256 and CRC32C are the hex digests of the stored bytes. Stores record
	// them (S3: user metadata and the CRC32C additional checksum, which the
	// server verifies) so an existing object can be compared cheaply.
	SHA256      string
	CRC32C      string
	ContentType string
	Metadata    map[string]string
}

// BucketReader is the read half of a store.
type BucketReader interface {
	// Get opens an object for reading. ErrNotFound if it does not exist.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// Stat describes an object. ErrNotFound if it does not exist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order, recursively. An error from fn stops the listing.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// BucketWriter is the write half of a store.
type BucketWriter interface {
	// Create stores size bytes from r at key, only if no object exists there
	// (S3: If-None-Match: *). If one does, it returns an error wrapping
	// ErrExists and leaves it untouched. A failed or interrupted Create
	// leaves no object (or a complete one) at key, never a partial one.
	Create(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) error
	// Delete removes an object; deleting a missing object is not an error.
	// segvault only deletes uncommitted data objects (no manifest).
	Delete(ctx context.Context, key string) error
}

// Bucket is a whole store.
type Bucket interface {
	BucketReader
	BucketWriter
	// String names the store for logs and errors, without secrets
	// (e.g. "s3://bucket/prefix at https://host" or "file:///var/lib/segvault").
	String() string
}
