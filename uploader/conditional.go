package uploader

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// Conditional writes: compare-and-swap on one small object, for claims
// (issue 16: which broker archives a partition when the cluster metadata
// does not settle it). Ordinary archive objects never use them: they are
// create-only and never replaced.

// ErrPreconditionFailed: a conditional replace found the object changed
// since it was read (another ETag), or gone.
var ErrPreconditionFailed = errors.New("object changed since it was read (precondition failed)")

// ConditionalWriter is implemented by stores that can create a small object
// and later replace it only if it is unchanged. S3 does it with
// If-None-Match: * and If-Match: <etag> on PutObject; Local with a
// directory lock around compare-and-rename.
type ConditionalWriter interface {
	// CreateETag stores data at key only if no object is there and returns
	// the new object's ETag. If one is there the error wraps ErrExists.
	CreateETag(ctx context.Context, key string, data []byte, opts PutOptions) (etag string, err error)
	// ReplaceIfMatch replaces the object at key with data only if its
	// current ETag is etag, and returns the new ETag. If the object changed
	// or is gone the error wraps ErrPreconditionFailed and nothing is
	// written. Two concurrent replaces with the same etag: at most one
	// succeeds.
	ReplaceIfMatch(ctx context.Context, key string, data []byte, etag string, opts PutOptions) (newETag string, err error)
}

var (
	_ ConditionalWriter = (*S3)(nil)
	_ ConditionalWriter = (*Local)(nil)
)

// AsConditional returns b's conditional writer, if it has one, looking
// through the retry and rate-limit wrappers: conditional writes go to the
// raw store (a conditional write must not be retried blindly: the first
// attempt may have succeeded; the caller re-reads instead).
func AsConditional(b any) (ConditionalWriter, bool) {
	for b != nil {
		if c, ok := b.(ConditionalWriter); ok {
			return c, true
		}
		u, ok := b.(interface{ unwrapBucket() Bucket })
		if !ok {
			return nil, false
		}
		b = u.unwrapBucket()
	}
	return nil, false
}

func (r *retryBucket) unwrapBucket() Bucket { return r.b }
func (r *rateBucket) unwrapBucket() Bucket  { return r.Bucket }

// --- S3 ---

// condPutOptions are the options of a small conditional PUT: metadata,
// content type, storage class and SSE as for Create, the CRC-32C the server
// verifies, no object-lock retention (a claim is rewritten in place), and
// no If-None-Match (the caller sets the condition).
func (s *S3) condPutOptions(data []byte, opts PutOptions) minio.PutObjectOptions {
	md := make(map[string]string, len(opts.Metadata)+3)
	for k, v := range opts.Metadata {
		md[strings.ToLower(k)] = v
	}
	crc := crc32.Checksum(data, castagnoli)
	md[MetaCRC32C] = formatCRC(crc)
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], crc)
	md[hdrChecksumCRC32C] = base64.StdEncoding.EncodeToString(be[:])
	return minio.PutObjectOptions{
		UserMetadata:         md,
		ContentType:          opts.ContentType,
		StorageClass:         s.opts.StorageClass,
		ServerSideEncryption: s.sse,
		DisableContentSha256: true,
	}
}

// CreateETag implements ConditionalWriter.
func (s *S3) CreateETag(ctx context.Context, key string, data []byte, opts PutOptions) (string, error) {
	po := s.condPutOptions(data, opts)
	po.SetMatchETagExcept("*")
	info, err := s.core.PutObject(ctx, s.opts.Bucket, key, bytes.NewReader(data), int64(len(data)), "", "", po)
	if err != nil {
		return "", s.mapErr("create", key, err)
	}
	return info.ETag, nil
}

// ReplaceIfMatch implements ConditionalWriter.
func (s *S3) ReplaceIfMatch(ctx context.Context, key string, data []byte, etag string, opts PutOptions) (string, error) {
	if etag == "" || etag == "*" {
		return "", fmt.Errorf("replace %s: an exact etag is required, got %q", key, etag)
	}
	po := s.condPutOptions(data, opts)
	po.SetMatchETag(etag)
	info, err := s.core.PutObject(ctx, s.opts.Bucket, key, bytes.NewReader(data), int64(len(data)), "", "", po)
	if err != nil {
		resp, _ := s3Error(err)
		switch resp.Code {
		case "PreconditionFailed", "ConditionalRequestConflict":
			return "", fmt.Errorf("replace %s if etag %s: %w", key, etag, ErrPreconditionFailed)
		case "NoSuchKey":
			return "", fmt.Errorf("replace %s if etag %s: %w (%w)", key, etag, ErrPreconditionFailed, ErrNotFound)
		}
		return "", fmt.Errorf("replace %s if etag %s: %w", key, etag, err)
	}
	return info.ETag, nil
}

// --- Local ---

// localETag is a local object's ETag: its mtime in nanoseconds and size.
// ReplaceIfMatch makes every replacement's mtime later than the replaced
// one's, so an ETag never comes back for the same key while it is only
// replaced (no ABA), even within one coarse filesystem clock tick.
func localETag(fi fs.FileInfo) string {
	return strconv.FormatInt(fi.ModTime().UnixNano(), 16) + "-" + strconv.FormatInt(fi.Size(), 16)
}

// lockDir takes an exclusive flock(2) on dir (created if needed) and
// returns the unlock function. Every conditional write of a key takes the
// lock of the key's directory, so compare-then-rename is atomic against
// the others (including other processes on the same filesystem).
func (l *Local) lockDir(dir string) (func() error, error) {
	if err := l.mkdirAll(dir); err != nil {
		return nil, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lock %s: %w", dir, err), d.Close())
	}
	return func() error {
		return errors.Join(syscall.Flock(int(d.Fd()), syscall.LOCK_UN), d.Close())
	}, nil
}

// CreateETag implements ConditionalWriter.
func (l *Local) CreateETag(ctx context.Context, key string, data []byte, opts PutOptions) (etag string, err error) {
	p, err := l.path(key)
	if err != nil {
		return "", err
	}
	unlock, err := l.lockDir(filepath.Dir(p))
	if err != nil {
		return "", fmt.Errorf("create %s: %w", key, err)
	}
	defer func() { err = errors.Join(err, unlock()) }()
	if err := l.Create(ctx, key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("create %s: stat: %w", key, err)
	}
	return localETag(fi), nil
}

// ReplaceIfMatch implements ConditionalWriter: under the directory lock it
// compares the ETag, writes a temp file (fsynced, mtime later than the
// replaced object's), renames it over the object and fsyncs the directory.
func (l *Local) ReplaceIfMatch(ctx context.Context, key string, data []byte, etag string, opts PutOptions) (newETag string, err error) {
	p, err := l.path(key)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("replace %s if etag %s: %w (%w)", key, etag, ErrPreconditionFailed, ErrNotFound)
	}
	unlock, err := l.lockDir(dir)
	if err != nil {
		return "", fmt.Errorf("replace %s: %w", key, err)
	}
	defer func() { err = errors.Join(err, unlock()) }()
	old, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("replace %s if etag %s: %w (%w)", key, etag, ErrPreconditionFailed, ErrNotFound)
		}
		return "", fmt.Errorf("replace %s: stat: %w", key, err)
	}
	if !old.Mode().IsRegular() {
		return "", fmt.Errorf("replace %s: %w", key, ErrNotFound)
	}
	if cur := localETag(old); cur != etag {
		return "", fmt.Errorf("replace %s if etag %s: current etag %s: %w", key, etag, cur, ErrPreconditionFailed)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", fmt.Errorf("replace %s: %w", key, err)
	}
	renamed := false
	defer func() {
		if f != nil {
			err = errors.Join(err, f.Close())
		}
		if !renamed {
			if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
				err = fmt.Errorf("replace %s: remove temp: %w", key, rmErr)
			}
		}
	}()
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("replace %s: write: %w", key, err)
	}
	md := localMetadata(opts)
	md[MetaCRC32C] = formatCRC(crc32.Checksum(data, castagnoli))
	if err := setXattrs(f, md); err != nil {
		return "", fmt.Errorf("replace %s: metadata: %w", key, err)
	}
	mtime := time.Now()
	if floor := old.ModTime().Add(time.Microsecond); !mtime.After(floor) {
		mtime = floor
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		return "", fmt.Errorf("replace %s: set mtime: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("replace %s: fsync: %w", key, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return "", fmt.Errorf("replace %s: close: %w", key, cerr)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("replace %s: rename: %w", key, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("replace %s: fsync dir: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("replace %s: stat: %w", key, err)
	}
	return localETag(fi), nil
}
