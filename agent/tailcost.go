package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// TailCostInput describes a tail-capture cost measurement (issue 15's cost
// figure, run by make bench): Partitions partitions with light traffic,
// each appending BatchesPerRound real batches of Source per round.
type TailCostInput struct {
	Dir             string          // work dir: the log dir and state dir are made under it
	Bucket          uploader.Bucket // where the captures go
	Partitions      int
	Rounds          int    // measured capture rounds (one per tail-interval)
	BatchesPerRound int    // batches appended to every partition before each round
	Source          []byte // a segment file's bytes: whole Kafka batches
	SourceName      string // for errors
}

// TailCost is the result: what the agent's tail-capture rounds stored.
type TailCost struct {
	Partitions    int     `json:"partitions"`
	Rounds        int     `json:"rounds"`
	IntervalSec   float64 `json:"tail_interval_seconds"` // the default tail-interval a round stands for
	Produced      int64   `json:"produced_bytes"`        // bytes appended to the partitions
	Puts          int64   `json:"puts"`                  // tail PUTs (packs, manifests)
	PackBytes     int64   `json:"pack_bytes"`
	ManifestBytes int64   `json:"manifest_bytes"`
	// PerPartitionPuts is what a per-partition upload (one data object
	// and one manifest per partition and round) would have made.
	PerPartitionPuts int64   `json:"per_partition_puts"`
	RoundSeconds     float64 `json:"round_seconds"` // mean wall time of a round
}

// PutsPerMinute are the tail PUTs per minute of one broker at the default
// tail-interval.
func (c TailCost) PutsPerMinute() float64 { return c.perMinute(c.Puts) }

// PerPartitionPutsPerMinute is the same for a per-partition upload.
func (c TailCost) PerPartitionPutsPerMinute() float64 { return c.perMinute(c.PerPartitionPuts) }

func (c TailCost) perMinute(puts int64) float64 {
	if c.Rounds == 0 || c.IntervalSec == 0 {
		return 0
	}
	return float64(puts) / float64(c.Rounds) * 60 / c.IntervalSec
}

// StoredPerProduced is the bytes stored (packs and manifests) per byte produced.
func (c TailCost) StoredPerProduced() float64 {
	if c.Produced == 0 {
		return 0
	}
	return float64(c.PackBytes+c.ManifestBytes) / float64(c.Produced)
}

// tailCounting counts the tail PUTs and bytes an Archive is asked to store.
type tailCounting struct {
	Archive
	puts, pack, manifest atomic.Int64
}

func (c *tailCounting) PutManifest(ctx context.Context, key string, data []byte) error {
	if strings.Contains(key, "/tails/") {
		c.puts.Add(1)
		if strings.HasSuffix(key, ".pack") {
			c.pack.Add(int64(len(data)))
		} else {
			c.manifest.Add(int64(len(data)))
		}
	}
	return c.Archive.PutManifest(ctx, key, data)
}

// MeasureTailCost runs the agent's tail-capture loop with its default
// settings (compression auto) over in.Partitions partition dirs: a first
// round, then in.Rounds rounds each after the partitions appended their
// batches, and counts what was stored.
func MeasureTailCost(ctx context.Context, in TailCostInput) (TailCost, error) {
	if in.Partitions <= 0 || in.Rounds <= 0 || in.BatchesPerRound <= 0 {
		return TailCost{}, errors.New("tail cost: partitions, rounds and batches per round must be positive")
	}
	var bounds []int
	r := segment.NewReader(bytes.NewReader(in.Source), int64(len(in.Source)), in.SourceName, segment.ReaderOptions{BaseOffset: -1})
	for r.Next() {
		bounds = append(bounds, int(r.Batch().Pos+r.Batch().Size()))
	}
	if r.Err() != nil {
		return TailCost{}, fmt.Errorf("tail cost: %s: %w", in.SourceName, r.Err())
	}
	if len(bounds) < in.Rounds*in.BatchesPerRound {
		return TailCost{}, fmt.Errorf("tail cost: %s holds %d batches, %d rounds of %d need more", in.SourceName, len(bounds), in.Rounds, in.BatchesPerRound)
	}
	logs, state := filepath.Join(in.Dir, "logs"), filepath.Join(in.Dir, "state")
	for _, d := range []string{logs, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return TailCost{}, err
		}
	}
	meta := filepath.Join(logs, "meta.properties")
	if err := os.WriteFile(meta, []byte("version=1\ncluster.id=tailcostcluster\nnode.id=1\n"), 0o644); err != nil {
		return TailCost{}, err
	}
	paths := make([]string, in.Partitions)
	for p := range paths {
		paths[p] = filepath.Join(logs, fmt.Sprintf("light-%d", p), segment.FormatName(0, segment.KindLog))
		if err := os.MkdirAll(filepath.Dir(paths[p]), 0o755); err != nil {
			return TailCost{}, err
		}
		if err := os.WriteFile(paths[p], nil, 0o644); err != nil {
			return TailCost{}, err
		}
	}
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.LowPriority, cfg.StagingBudget = []string{logs}, "file://x", state, false, 0
	store := &tailCounting{Archive: NewArchive(in.Bucket, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}
	a, err := New(ctx, cfg, store, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "bench")
	if err != nil {
		return TailCost{}, err
	}
	defer a.Close()
	tl := newTailer(a)
	tl.round(ctx)
	out := TailCost{Partitions: in.Partitions, Rounds: in.Rounds, IntervalSec: cfg.tailInterval().Seconds()}
	pos := 0
	var took time.Duration
	for round := 0; round < in.Rounds; round++ {
		end := bounds[(round+1)*in.BatchesPerRound-1]
		piece := in.Source[pos:end]
		pos = end
		for _, p := range paths {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return out, err
			}
			_, err = f.Write(piece)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return out, fmt.Errorf("tail cost: append to %s: %w", p, err)
			}
			out.Produced += int64(len(piece))
		}
		start := time.Now()
		tl.round(ctx)
		took += time.Since(start)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	out.Puts, out.PackBytes, out.ManifestBytes = store.puts.Load(), store.pack.Load(), store.manifest.Load()
	if tl.st == nil || tl.st.Pending != nil || out.Puts < 2*int64(in.Rounds) {
		return out, fmt.Errorf("tail cost: %d tail PUTs for %d rounds, want at least 2 per round: captures failed (see segvault_agent_tail_failures_total)", out.Puts, in.Rounds)
	}
	out.PerPartitionPuts = int64(in.Partitions) * 2 * int64(in.Rounds)
	out.RoundSeconds = took.Seconds() / float64(in.Rounds)
	return out, nil
}
