package archive

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// TestH29PruneObjectLock: on a MinIO bucket with object lock, a superseded
// version whose objects are under governance retention or a legal hold is
// not attempted and is reported with when it becomes deletable; the
// unlocked one goes; a second prune deletes nothing.
func TestH29PruneObjectLock(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewObjectLockBucket(t)
	plain := newTestS3(t, srv, bucket, nil)
	locked := newTestS3(t, srv, bucket, func(o *uploader.S3Options) { o.RetentionMode, o.RetentionDays = "GOVERNANCE", 1 })
	on, err := uploader.ObjectLockEnabled(context.Background(), uploader.WithRetry(plain, uploader.RetryPolicy{}))
	if err != nil || !on {
		t.Fatalf("object lock enabled: %v, %v", on, err)
	}
	a := &h29Arch{t: t, b: plain, l: NewLayout("pfx"), cl: "c1"}
	now := time.Now().UTC()
	day := 24 * time.Hour
	mFree, dFree := a.version("t", 0, 1, 0, 100, now.Add(-10*day))
	a.b = locked
	mLock, dLock := a.version("t", 1, 1, 0, 100, now.Add(-10*day))
	a.b = plain
	mHold, dHold := a.version("t", 2, 1, 0, 100, now.Add(-10*day))
	if err := srv.Client().PutObjectLegalHold(context.Background(), bucket, dHold, minio.PutObjectLegalHoldOptions{Status: ptr(minio.LegalHoldEnabled)}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		a.version("t", p, 1, 0, 100, now.Add(-5*day)) // the live versions
	}
	b := uploader.WithRetry(plain, uploader.RetryPolicy{})
	rep, err := Prune(context.Background(), b, a.l, "", PruneOptions{KeepWithin: day, DeleteDelay: -1})
	if err != nil || len(rep.Failures) > 0 {
		t.Fatalf("prune: %v %v", err, rep.Failures)
	}
	keys := a.keys()
	h29Has(t, keys, false, mFree, dFree)
	h29Has(t, keys, true, mLock, dLock, mHold, dHold)
	if len(rep.Locked) != 2 {
		t.Fatalf("locked: %+v", rep.Locked)
	}
	for _, l := range rep.Locked {
		switch l.Unit.Keys[0] {
		case mLock:
			if l.LegalHold || l.DeletableAt.Before(now.Add(23*time.Hour)) || l.DeletableAt.After(now.Add(25*time.Hour)) {
				t.Errorf("retained version: %+v, want deletable in about a day", l)
			}
		case mHold:
			if !l.LegalHold || l.Key != dHold {
				t.Errorf("legal hold: %+v", l)
			}
		default:
			t.Errorf("unexpected locked unit %+v", l)
		}
	}
	t.Logf("bytes freed on MinIO with object lock: %d; locked: %+v", rep.BytesFreed, rep.Locked)
	// Versioned bucket (object lock needs versioning): the deletes are
	// delete markers over the kept versions, for NoncurrentVersionExpiration.
	markers, versions := 0, 0
	for oi := range srv.Client().ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: mFree, WithVersions: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		if oi.IsDeleteMarker {
			markers++
		} else {
			versions++
		}
	}
	if markers != 1 || versions != 1 {
		t.Errorf("%s: %d delete markers and %d versions, want 1 and 1", mFree, markers, versions)
	}
	rep2, err := Prune(context.Background(), b, a.l, "", PruneOptions{KeepWithin: day, DeleteDelay: -1})
	if err != nil || len(rep2.Deleted) != 0 || len(rep2.Locked) != 2 {
		t.Fatalf("second prune: %v, deleted %v, locked %d", err, rep2.Deleted, len(rep2.Locked))
	}
}

func ptr[T any](v T) *T { return &v }

// TestH29PruneDefaultRetention: with a default retention on the bucket the
// deletion marks prune writes are locked too: the deletion completes, the
// mark stays (reported, with when it can go) and a second prune deletes
// nothing and fails nothing.
func TestH29PruneDefaultRetention(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewObjectLockBucket(t)
	s3 := newTestS3(t, srv, bucket, nil)
	a := &h29Arch{t: t, b: s3, l: NewLayout(""), cl: "c1"}
	now := time.Now().UTC()
	day := 24 * time.Hour
	m1, d1 := a.version("t", 0, 1, 0, 100, now.Add(-10*day))
	a.version("t", 0, 1, 0, 100, now.Add(-5*day))
	mode, validity, unit := minio.Governance, uint(1), minio.Days
	if err := srv.Client().SetObjectLockConfig(context.Background(), bucket, &mode, &validity, &unit); err != nil {
		t.Fatal(err)
	}
	b := uploader.WithRetry(s3, uploader.RetryPolicy{})
	for run := 1; run <= 2; run++ {
		rep, err := Prune(context.Background(), b, a.l, "", PruneOptions{KeepWithin: day, DeleteDelay: -1})
		if err != nil || len(rep.Failures) > 0 {
			t.Fatalf("prune %d: %v %v", run, err, rep.Failures)
		}
		if len(rep.Locked) != 1 || rep.Locked[0].Unit.Kind != "deletion-mark" || rep.Locked[0].DeletableAt.Before(now.Add(23*time.Hour)) {
			t.Fatalf("prune %d: locked %+v", run, rep.Locked)
		}
		if run == 2 && len(rep.Deleted) != 0 {
			t.Errorf("second prune deleted %v", rep.Deleted)
		}
	}
	h29Has(t, a.keys(), false, m1, d1)
}
