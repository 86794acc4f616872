package uploader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"
)

// Retention is an object's S3 object-lock state: while it holds, the object
// cannot be deleted (governance mode: not without bypass permission, which
// segvault never uses).
type Retention struct {
	Mode        string    // "GOVERNANCE", "COMPLIANCE" or "" (none)
	RetainUntil time.Time // zero: no retention period
	LegalHold   bool
}

// LockedAt reports whether the retention forbids deleting the object at now.
func (r Retention) LockedAt(now time.Time) bool {
	return r.LegalHold || r.Mode != "" && r.RetainUntil.After(now)
}

// RetentionReader is a store that knows about object lock (S3).
type RetentionReader interface {
	// ObjectLockEnabled reports whether the bucket has object lock on: only
	// then can any object be locked.
	ObjectLockEnabled(ctx context.Context) (bool, error)
	// ObjectRetention reads one object's retention and legal hold.
	ObjectRetention(ctx context.Context, key string) (Retention, error)
}

// ObjectLockEnabled reports whether b's bucket can hold locked objects (false
// for a store without object lock, such as a local directory).
func ObjectLockEnabled(ctx context.Context, b Bucket) (bool, error) {
	if r, ok := b.(RetentionReader); ok {
		return r.ObjectLockEnabled(ctx)
	}
	return false, nil
}

// ObjectRetention reads key's retention from b (zero for a store without
// object lock).
func ObjectRetention(ctx context.Context, b Bucket, key string) (Retention, error) {
	if r, ok := b.(RetentionReader); ok {
		return r.ObjectRetention(ctx, key)
	}
	return Retention{}, nil
}

// ObjectLockEnabled implements RetentionReader.
func (s *S3) ObjectLockEnabled(ctx context.Context) (bool, error) {
	status, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.opts.Bucket)
	if err != nil {
		if resp, ok := s3Error(err); ok && resp.Code == "ObjectLockConfigurationNotFoundError" {
			return false, nil
		}
		return false, fmt.Errorf("object lock configuration of bucket %s: %w", s.opts.Bucket, err)
	}
	return status == "Enabled", nil
}

// ObjectRetention implements RetentionReader.
func (s *S3) ObjectRetention(ctx context.Context, key string) (Retention, error) {
	var r Retention
	mode, until, err := s.client.GetObjectRetention(ctx, s.opts.Bucket, key, "")
	if err != nil {
		if resp, ok := s3Error(err); !ok || resp.Code != "NoSuchObjectLockConfiguration" {
			return r, s.mapErr("get retention of", key, err)
		}
	} else {
		if mode != nil {
			r.Mode = string(*mode)
		}
		if until != nil {
			r.RetainUntil = *until
		}
	}
	hold, err := s.client.GetObjectLegalHold(ctx, s.opts.Bucket, key, minio.GetObjectLegalHoldOptions{})
	if err != nil {
		if resp, ok := s3Error(err); !ok || resp.Code != "NoSuchObjectLockConfiguration" {
			return r, s.mapErr("get legal hold of", key, err)
		}
	} else if hold != nil && *hold == minio.LegalHoldEnabled {
		r.LegalHold = true
	}
	return r, nil
}

// The retry and rate-limit wrappers pass object-lock questions through
// (retried like any read).

func (r *retryBucket) ObjectLockEnabled(ctx context.Context) (bool, error) {
	var on bool
	err := r.do(ctx, "object lock configuration", "", func() (err error) {
		on, err = ObjectLockEnabled(ctx, r.b)
		return err
	})
	return on, err
}

func (r *retryBucket) ObjectRetention(ctx context.Context, key string) (Retention, error) {
	var ret Retention
	err := r.do(ctx, "get retention", key, func() (err error) {
		ret, err = ObjectRetention(ctx, r.b, key)
		if errors.Is(err, ErrNotFound) {
			return permanent{err}
		}
		return err
	})
	return ret, err
}

func (r *rateBucket) ObjectLockEnabled(ctx context.Context) (bool, error) {
	return ObjectLockEnabled(ctx, r.Bucket)
}

func (r *rateBucket) ObjectRetention(ctx context.Context, key string) (Retention, error) {
	return ObjectRetention(ctx, r.Bucket, key)
}
