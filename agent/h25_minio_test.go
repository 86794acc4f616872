package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

func h25MinIO(t *testing.T) uploader.Bucket {
	t.Helper()
	srv := miniotest.Start(t)
	b, err := uploader.NewS3(uploader.S3Options{Endpoint: srv.Endpoint(), Bucket: srv.NewBucket(t), DisableTLS: true, PathStyle: true,
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey(), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestH25TailDaemonMinIO: the daemon (Run) against real MinIO captures what
// the broker appends every tail-interval, reports the recovery point, and
// on stop makes a last capture of everything appended, encrypted when the
// archive is.
func TestH25TailDaemonMinIO(t *testing.T) {
	b := h25MinIO(t)
	logs := h25LogDir(t)
	w := h25NewWriter(t, filepath.Join(logs, "status-0", "00000000000000000000.log"), h25StatusLog)
	meta := h25NewWriter(t, filepath.Join(logs, "__cluster_metadata-0", "00000000000000000000.log"), h25MetaLog)
	key, err := archive.ParseCryptKey(bytes.Repeat([]byte{0x25}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a := h25NewAgent(t, logs, t.TempDir(), b, func(c *Config) {
		c.TailInterval, c.ScanInterval, c.EncryptionKey, c.DrainTimeout = 3*time.Second, time.Second, key, 10*time.Second
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	time.Sleep(time.Second) // the first round (at start) found nothing
	w.batches(10)
	meta.batches(1)
	appended := time.Now()
	var rpo float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		time.Sleep(200 * time.Millisecond)
		rpo = max(rpo, h25Counter(a.metrics.RPOSeconds))
		caps, _ := h25Captures(t, b, key)
		chains := h25Chains(t, caps)
		if len(chains["status-0"]) == w.pos && len(chains["__cluster_metadata-0"]) == meta.pos {
			t.Logf("tail-interval 3s: appended bytes committed after %.1fs; rpo_seconds peaked at %.1f", time.Since(appended).Seconds(), rpo)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not captured within 20s: %d of %d bytes", len(chains["status-0"]), w.pos)
		}
	}
	if rpo <= 0 || rpo > 10 {
		t.Errorf("rpo_seconds peaked at %.1f while bytes waited for a 3s capture", rpo)
	}
	// Appended just before the stop: captured by the last round.
	w.batches(5)
	w.write(40) // a torn batch: left out
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	caps, _ := h25Captures(t, b, key)
	chains := h25Chains(t, caps)
	file, _ := os.ReadFile(w.path)
	if !bytes.Equal(chains["status-0"], file[:w.whole()]) {
		t.Fatalf("after the stop: %d bytes captured, %d whole", len(chains["status-0"]), w.whole())
	}
	for _, c := range caps {
		for _, ch := range c.c.Chunks {
			if ch.KeyID != key.ID() {
				t.Fatalf("chunk not sealed with the archive's key: %+v", ch)
			}
		}
	}
	if n := h25Counter(a.metrics.TailCaptures); n < 2 {
		t.Errorf("tail_captures_total %.0f", n)
	}
}

// TestH25TailEarlyOnMaxBytes: with a long interval, once tail-max-bytes
// have been appended a capture comes within seconds.
func TestH25TailEarlyOnMaxBytes(t *testing.T) {
	dir := t.TempDir()
	b, err := uploader.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := h25LogDir(t)
	w := h25NewWriter(t, filepath.Join(logs, "status-0", "00000000000000000000.log"), h25StatusLog)
	a := h25NewAgent(t, logs, t.TempDir(), b, func(c *Config) { c.TailInterval, c.TailMaxBytes = time.Hour, 1<<20 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	time.Sleep(time.Second) // the first round (at start) is done
	// 1 MiB of real batches, renumbered to continue.
	var data []byte
	next := int64(0)
	for len(data) < 1<<20+1000 {
		chunk := h25Renumber(t, w.src, next, 0)
		next = h25NextOffset(t, chunk)
		data = append(data, chunk...)
	}
	if err := os.WriteFile(w.path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 15*time.Second {
		caps, _ := h25Captures(t, b)
		if chains := h25Chains(t, caps); len(chains["status-0"]) == len(data) {
			t.Logf("captured %d bytes %.1fs after they were appended (interval 1h)", len(data), time.Since(start).Seconds())
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("tail-max-bytes did not trigger a capture within 15s")
}

// TestH25TailPreallocatedNoEarlyRounds: a preallocated active segment
// (preallocate=true: the file has its full size from the start) does not
// look like tail-max-bytes of new data: appends into it are captured every
// interval, not every few seconds.
func TestH25TailPreallocatedNoEarlyRounds(t *testing.T) {
	b, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := h25LogDir(t)
	w := h25NewWriter(t, filepath.Join(logs, "status-0", "00000000000000000000.log"), h25StatusLog)
	if err := os.Truncate(w.path, 4<<20); err != nil {
		t.Fatal(err)
	}
	a := h25NewAgent(t, logs, t.TempDir(), b, func(c *Config) { c.TailInterval, c.TailMaxBytes = time.Hour, 1<<20 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	f, err := os.OpenFile(w.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pos := 0
	for i := 0; i < 14; i++ { // 7s of appends into the preallocated space
		time.Sleep(500 * time.Millisecond)
		end := w.bounds[i]
		f.WriteAt(w.src[pos:end], int64(pos))
		pos = end
	}
	if n := h25Counter(a.metrics.TailCaptures); n > 0 {
		t.Errorf("%v captures in 7s with a 1h interval: the preallocated size was taken for new data", n)
	}
	cancel()
	<-done
	caps, _ := h25Captures(t, b)
	if chains := h25Chains(t, caps); len(chains["status-0"]) != pos {
		t.Errorf("after the stop: %d bytes captured of %d", len(chains["status-0"]), pos)
	}
}
