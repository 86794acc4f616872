package agent

import (
	"context"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// h32Down is a bucket that cannot be reached: every request fails.
type h32Down struct{ Archive }

func (h32Down) PutManifest(context.Context, string, []byte) error { return errH25 }
func (h32Down) List(context.Context, string, func(uploader.ObjectInfo) error) error {
	return errH25
}
func (h32Down) Get(context.Context, string, int64) ([]byte, error) { return nil, errH25 }
func (h32Down) Exists(context.Context, string) (bool, error)       { return false, errH25 }

// TestH32TailRPOBucketDownAtStart: an agent that starts while the bucket is
// unreachable captures nothing; the recovery-point gauge must grow (the
// alert must be able to fire), not read 0 because no round got as far as
// looking at the partitions.
func TestH32TailRPOBucketDownAtStart(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.a.Close()
	e.a = h25NewAgentOn(t, e.logs, e.state, h32Down{NewArchive(e.bucket, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}, nil)
	e.tl = newTailer(e.a)
	e.w.batches(4)
	rpo := func() float64 { return h25Counter(e.a.metrics.RPOSeconds) }
	e.tl.round(context.Background())
	time.Sleep(300 * time.Millisecond)
	e.tl.observe(time.Now())
	e.tl.round(context.Background())
	if r := rpo(); r < 0.3 {
		t.Fatalf("bucket down since the start, nothing captured for 0.3s: rpo %v", r)
	}
}
