package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// h9HungArchive is an endpoint that accepts connections and never answers:
// every call waits for its context (as an HTTP request to it does).
type h9HungArchive struct {
	Archive
	calls atomic.Int32
}

func (h *h9HungArchive) hang(ctx context.Context) error {
	h.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (h *h9HungArchive) PutFile(ctx context.Context, key string, src io.Reader, size int64) (archive.FileRecord, error) {
	return archive.FileRecord{}, h.hang(ctx)
}
func (h *h9HungArchive) PutManifest(ctx context.Context, key string, data []byte) error {
	return h.hang(ctx)
}
func (h *h9HungArchive) Exists(ctx context.Context, key string) (bool, error) {
	return false, h.hang(ctx)
}

// TestH9StopBeforeFirstPass: a SIGTERM that arrives while the agent is
// still starting (a state rebuild against an endpoint that never answers)
// ends the daemon and --once at once: no upload, no log-dir capture is
// started after the stop, so nothing waits for the drain timeout.
func TestH9StopBeforeFirstPass(t *testing.T) {
	for _, once := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "logs")
		if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
			Topics: []brokersim.TopicSpec{{Name: "t", Records: 800}}}); err != nil {
			t.Fatal(err)
		}
		b, _ := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
		st := &h9HungArchive{Archive: NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}
		cfg := Defaults()
		cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority, cfg.DrainTimeout = []string{dir}, "file://x", t.TempDir(), 0, false, 3*time.Second
		a, err := New(context.Background(), cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the stop came during New
		start := time.Now()
		if once {
			_, err = a.RunOnce(ctx)
		} else {
			err = a.Run(ctx, nil)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("once=%v: returned %s after a stop that came before the first pass (drain timeout 3s)", once, d)
		}
		if n := st.calls.Load(); n > 0 {
			t.Errorf("once=%v: %d store calls started after the stop", once, n)
		}
		if once && err == nil {
			t.Errorf("once: a run stopped before it began must say it was interrupted")
		}
		a.Close()
	}
}
