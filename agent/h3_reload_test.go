package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

func h3Agent(t *testing.T, topics []brokersim.TopicSpec) (*Agent, Config) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 4 << 10, Topics: topics}); err != nil {
		t.Fatal(err)
	}
	b, _ := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority, cfg.ScanInterval = []string{dir}, "file://x", t.TempDir(), 0, false, 20*time.Millisecond
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, cfg
}

// TestH3ReloadWhileUploading: SIGHUP reloads while uploads read the
// config; go test -race must find no data race.
func TestH3ReloadWhileUploading(t *testing.T) {
	a, cfg := h3Agent(t, []brokersim.TopicSpec{{Name: "t", Partitions: 4, Records: 6000, BatchRecords: 10}})
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan Config)
	ret := make(chan error, 1)
	go func() { ret <- a.Run(ctx, reload) }()
	deadline := time.After(3 * time.Second)
	for i := 0; ; i++ {
		c := cfg
		c.DeepValidate, c.DropCache = i%2 == 0, i%2 == 1
		c.SettleTime = time.Duration(i%2) * time.Millisecond
		c.ExcludeTopics = []string{"nothing" + string(rune('a'+i%26))}
		select {
		case reload <- c:
			continue
		case <-deadline:
		}
		break
	}
	cancel()
	if err := <-ret; err != nil {
		t.Fatal(err)
	}
}

// TestH3ReloadBadPattern: a reload with a pattern that compiles alone but
// not anchored (`\Q` quotes the closing paren) is rejected and counted; the
// old filter stays; nothing panics.
func TestH3ReloadBadPattern(t *testing.T) {
	a, cfg := h3Agent(t, []brokersim.TopicSpec{{Name: "keep", Records: 50}, {Name: "drop", Records: 50}})
	c := cfg
	c.ExcludeTopics = []string{"drop"}
	if err := a.applyConfig(c); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.IncludeTopics = []string{`\Qkeep`}
	if err := bad.Validate(); err == nil {
		t.Fatal("Validate accepts a pattern the filter cannot compile")
	}
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan Config, 1)
	reload <- bad
	ret := make(chan error, 1)
	go func() { ret <- a.Run(ctx, reload) }()
	waitUntil := time.Now().Add(10 * time.Second)
	for h3Counter(a.metrics.Failures.WithLabelValues("config_reload")) != 1 {
		if time.Now().After(waitUntil) {
			t.Fatal("rejected reload not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-ret
	if f := a.snap().filter; f.match("drop") || !f.match("keep") {
		t.Fatal("the old filter was not kept")
	}
}

func h3Counter(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return -1
	}
	return m.Counter.GetValue()
}
