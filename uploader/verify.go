package uploader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
)

// User metadata names recorded with every object PutFile writes (lower case,
// without the x-amz-meta- prefix). Stores persist them (S3: user metadata;
// Local: xattrs) so an existing object can be compared without reading it.
const (
	MetaSHA256      = "sha256"      // hex SHA-256 of the stored bytes
	MetaCRC32C      = "crc32c"      // hex CRC-32C of the stored bytes
	MetaRawSize     = "raw-size"    // decimal size of the raw (pre-compression) bytes
	MetaRawSHA256   = "raw-sha256"  // hex SHA-256 of the raw bytes
	MetaRawCRC32C   = "raw-crc32c"  // hex CRC-32C of the raw bytes
	MetaCompression = "compression" // CompressionNone or CompressionZstd
	MetaEncryption  = "encryption"  // EncryptionNone or EncryptionAESGCMStream
	MetaKeyID       = "key-id"      // client-side key fingerprint
)

// castagnoli is the package's one CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CreateVerified creates key like b.Create, and when an object is already
// there compares it with what was to be written: the same content (size and
// SHA-256 of the stored bytes) is success, anything else an error wrapping
// ErrConflict. The existing object is never overwritten.
//
// The comparison uses the existing object's sha256 metadata when it has it,
// otherwise it downloads and hashes the object. opts.SHA256 must be set, or r
// must be an io.ReadSeeker (it is then hashed first and rewound).
func CreateVerified(ctx context.Context, b Bucket, key string, r io.Reader, size int64, opts PutOptions) error {
	if opts.SHA256 == "" {
		rs, ok := r.(io.ReadSeeker)
		if !ok {
			return fmt.Errorf("create %s: CreateVerified needs PutOptions.SHA256 or a seekable reader", key)
		}
		start, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
		h := sha256.New()
		c := crc32.New(castagnoli)
		n, err := io.Copy(io.MultiWriter(h, c), rs)
		if err != nil {
			return fmt.Errorf("create %s: hash: %w", key, err)
		}
		if size >= 0 && n != size {
			return fmt.Errorf("create %s: read %d bytes, expected %d: %w", key, n, size, io.ErrUnexpectedEOF)
		}
		size = n
		opts.SHA256 = hex.EncodeToString(h.Sum(nil))
		if opts.CRC32C == "" {
			opts.CRC32C = fmt.Sprintf("%08x", c.Sum32())
		}
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
	}
	err := b.Create(ctx, key, r, size, opts)
	if err == nil || !errors.Is(err, ErrExists) {
		return err
	}
	same, err := SameStored(ctx, b, key, size, opts.SHA256)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("create %s: %w", key, ErrConflict)
	}
	return nil
}

// SameStored reports whether the object at key has the given size and stored
// SHA-256, from its metadata when present, else by reading it.
func SameStored(ctx context.Context, b BucketReader, key string, size int64, sha string) (bool, error) {
	info, err := b.Stat(ctx, key)
	if err != nil {
		return false, fmt.Errorf("compare existing %s: %w", key, err)
	}
	if size >= 0 && info.Size != size {
		return false, nil
	}
	if got := info.Metadata[MetaSHA256]; got != "" {
		return got == sha, nil
	}
	got, _, err := hashObject(ctx, b, key)
	if err != nil {
		return false, fmt.Errorf("compare existing %s: %w", key, err)
	}
	return got == sha, nil
}

// hashObject downloads key and returns the hex SHA-256 and size of its bytes.
func hashObject(ctx context.Context, b BucketReader, key string) (string, int64, error) {
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func formatCRC(c uint32) string { return fmt.Sprintf("%08x", c) }

func parseSize(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}
