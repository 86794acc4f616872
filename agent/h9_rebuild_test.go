package agent

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// h9ListHangs is a bucket whose listing never answers; it records what the
// agent had logged when the listing started.
type h9ListHangs struct {
	Archive
	mu     sync.Mutex
	logged string
	log    *bytes.Buffer
}

func (h *h9ListHangs) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	h.mu.Lock()
	if h.logged == "" {
		h.logged = h.log.String()
	}
	h.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

// TestH9RebuildIsLoggedBeforeItStarts: a fresh state dir is rebuilt from
// the bucket before the agent starts; when the bucket does not answer, the
// log already says what the agent is waiting for (not silence until the
// stop).
func TestH9RebuildIsLoggedBeforeItStarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 800}}}); err != nil {
		t.Fatal(err)
	}
	b, _ := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	var buf bytes.Buffer
	st := &h9ListHangs{Archive: NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{}), log: &buf}
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.LowPriority = []string{dir}, "file://x", t.TempDir(), false
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	a, err := New(ctx, cfg, st, slog.New(slog.NewTextHandler(&buf, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	st.mu.Lock()
	defer st.mu.Unlock()
	if !strings.Contains(st.logged, "rebuilding state from the bucket") {
		t.Errorf("nothing logged while the bucket listing hangs; log at that point:\n%s", st.logged)
	}
}
