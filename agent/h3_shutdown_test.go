package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// h3StuckArchive is a store whose uploads hang and ignore their context
// (a wedged NFS mount, a kernel that never returns).
type h3StuckArchive struct {
	Archive
	started chan struct{}
	release chan struct{}
}

func (s *h3StuckArchive) PutFile(ctx context.Context, key string, src io.Reader, size int64) (archive.FileRecord, error) {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-s.release
	return archive.FileRecord{}, context.Canceled
}

func h3StuckAgent(t *testing.T, drain time.Duration) (*Agent, *h3StuckArchive) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 800}}}); err != nil {
		t.Fatal(err)
	}
	b, _ := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	st := &h3StuckArchive{Archive: NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{}),
		started: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(func() { close(st.release) })
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority, cfg.DrainTimeout = []string{dir}, "file://x", t.TempDir(), 0, false, drain
	a, err := New(context.Background(), cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	return a, st
}

// TestH3StopWithStuckUpload: with an upload that never returns, stopping
// the daemon and --once still ends within the drain timeout.
func TestH3StopWithStuckUpload(t *testing.T) {
	for _, once := range []bool{false, true} {
		a, st := h3StuckAgent(t, 500*time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		ret := make(chan error, 1)
		go func() {
			if once {
				_, err := a.RunOnce(ctx)
				ret <- err
			} else {
				ret <- a.Run(ctx, nil)
			}
		}()
		select {
		case <-st.started:
		case <-time.After(20 * time.Second):
			t.Fatal("no upload started")
		}
		start := time.Now()
		cancel()
		select {
		case err := <-ret:
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("once=%v: returned %s after the stop, drain timeout 500ms", once, d)
			}
			if once && err == nil {
				t.Errorf("once: an interrupted run must say so")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("once=%v: still running 10s after the stop (drain timeout 500ms)", once)
		}
		a.Close()
	}
}
