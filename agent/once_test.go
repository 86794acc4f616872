package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// TestRunOnceArchivesEverything: one RunOnce archives every rolled
// segment however many there are (more than passes x workers).
func TestRunOnceArchivesEverything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 4 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 4, Records: 24000, BatchRecords: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	rolled := 0
	for _, p := range res.Topic("t").Partitions {
		rolled += len(p.Segments) - 1
	}
	if rolled < 500 {
		t.Fatalf("only %d rolled segments: not a useful test", rolled)
	}
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority, cfg.Concurrency = []string{dir}, "file://x", t.TempDir(), 0, false, 2
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archived != rolled || rep.Waiting != 0 || rep.Failed != 0 {
		t.Fatalf("archived %d of %d: %+v", rep.Archived, rolled, rep)
	}
}
