package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// TestH32TailOffRPO: with tail-capture off nothing is read, uploaded or
// written to the state dir for tails, and the recovery-point gauge tells
// the truth: 0 while the active segment is empty, growing once bytes are
// appended that only a roll will archive (so SegvaultRecoveryPointHigh
// can fire); it read 0 forever.
func TestH32TailOffRPO(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.a.Close()
	e.a = h25NewAgent(t, e.logs, e.state, e.bucket, func(c *Config) { c.TailCapture, c.TailInterval = "off", time.Second })
	rpo := func() float64 { return h25Counter(e.a.metrics.RPOSeconds) }
	ctx, cancel := context.WithCancel(context.Background())
	stop := e.a.startTail(ctx)
	defer func() { cancel(); stop() }()
	time.Sleep(600 * time.Millisecond)
	if r := rpo(); r != 0 {
		t.Fatalf("empty active segment: rpo %v", r)
	}
	e.w.batches(4)
	time.Sleep(1500 * time.Millisecond)
	if r := rpo(); r < 0.5 {
		t.Fatalf("tail capture off, bytes appended 1.5s ago not archived: rpo %v", r)
	}
	if _, n := h25Captures(t, e.bucket); n != 0 {
		t.Fatalf("tail capture off: %d tail manifests uploaded", n)
	}
	if _, err := os.Stat(filepath.Join(e.state, tailStateFile)); err == nil {
		t.Fatal("tail capture off: tail state written")
	}
}

// TestH32TailSeqAfterStateRollback: the state dir comes back older than
// the bucket (a VM or disk snapshot restored, a copied state dir): the next
// capture's seq must still be above every seq of the broker in the bucket,
// as restore orders one broker's captures by seq (a reused, lower seq makes
// the new captures look older than the ones they supersede).
func TestH32TailSeqAfterStateRollback(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(5)
	e.tl.round(context.Background())
	old, err := os.ReadFile(filepath.Join(e.state, tailStateFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		e.w.batches(3)
		e.tl.round(context.Background())
	}
	e.a.Close()
	if err := os.WriteFile(filepath.Join(e.state, tailStateFile), old, 0o640); err != nil {
		t.Fatal(err)
	}
	e.open()
	e.w.batches(3)
	e.tl.round(context.Background())
	seqs := map[string]int{}
	if err := e.bucket.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if strings.Contains(oi.Key, "/tails/") && strings.HasSuffix(oi.Key, ".json") {
			name := oi.Key[strings.LastIndex(oi.Key, "/")+1:]
			seqs[name[:20]]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 5 {
		t.Fatalf("5 captures, seqs %v", seqs)
	}
	for s, n := range seqs {
		if n > 1 {
			t.Fatalf("seq %s used by %d tail manifests", s, n)
		}
	}
}

// TestH32TailRPOUploadsFail: captures that keep failing (pack and manifest
// PUTs refused) leave the gauge growing from the first uncaptured append.
func TestH32TailRPOUploadsFail(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	f := &h25Faulty{Archive: NewArchive(e.bucket, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}
	e.a.Close()
	e.a = h25NewAgentOn(t, e.logs, e.state, f, nil)
	e.tl = newTailer(e.a)
	rpo := func() float64 { return h25Counter(e.a.metrics.RPOSeconds) }
	e.w.batches(3)
	e.tl.round(context.Background())
	if r := rpo(); r != 0 {
		t.Fatalf("captured: rpo %v", r)
	}
	f.failPack.Store(100)
	e.w.batches(3)
	e.tl.observe(time.Now())
	for i := 0; i < 3; i++ {
		time.Sleep(150 * time.Millisecond)
		e.tl.round(context.Background())
		e.tl.observe(time.Now())
	}
	if r := rpo(); r < 0.4 {
		t.Fatalf("pack PUTs failing for 0.45s: rpo %v", r)
	}
	f.failPack.Store(0)
	f.failManifestBefore.Store(100)
	e.tl.round(context.Background())
	time.Sleep(150 * time.Millisecond)
	e.tl.round(context.Background())
	if r := rpo(); r < 0.5 {
		t.Fatalf("manifest PUTs failing: rpo %v", r)
	}
	f.failManifestBefore.Store(0)
	e.tl.round(context.Background()) // settles the pending one, then captures
	e.tl.round(context.Background())
	if r := rpo(); r != 0 {
		t.Fatalf("bucket back, all captured: rpo %v", r)
	}
}
