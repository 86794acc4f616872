package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

// h2Logs generates a broker log dir with several rolled segments.
func h2Logs(t *testing.T) (string, *brokersim.Result) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 8 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 1200}}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, res
}

// h2Agent opens an agent over logs with its state in state.
func h2Agent(t *testing.T, logs, state, archiveDir string, settle time.Duration, budget int64) *Agent {
	t.Helper()
	b, err := uploader.NewLocal(archiveDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority, cfg.StagingBudget = []string{logs}, "file://x", state, settle, false, budget
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// h2Seen returns the rolled candidates an agent has seen, sorted.
func h2Seen(a *Agent) []*observation {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*observation
	for _, o := range a.seen {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].c.key() < out[j].c.key() })
	return out
}

// TestH2StagingBudgetAcrossRestart: a restarted agent re-staging the
// segments it had already linked counts their bytes once, so every one
// stays protected within a budget that fits them once.
func TestH2StagingBudgetAcrossRestart(t *testing.T) {
	logs, _ := h2Logs(t)
	state, archiveDir := t.TempDir(), t.TempDir()
	probe := h2Agent(t, logs, t.TempDir(), archiveDir, time.Hour, 1<<30)
	if _, err := probe.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	var total int64
	files := map[string]bool{} // a producer snapshot belongs to two segments
	for _, o := range h2Seen(probe) {
		for _, f := range o.c.Files {
			if p := o.c.path(f.Name); !files[p] {
				files[p] = true
				total += f.Size
			}
		}
	}
	probe.Close()
	if total == 0 {
		t.Fatal("no rolled segments")
	}
	budget := total + total/2 // fits them once, not twice
	for run := 0; run < 3; run++ {
		a := h2Agent(t, logs, state, archiveDir, time.Hour, budget) // nothing settles: all stay staged
		if _, err := a.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, o := range h2Seen(a) {
			if !o.staged {
				t.Errorf("run %d: %s base %d not protected", run, o.c.DirPath, o.c.Base)
			}
		}
		if got := a.staging.Used(); got != total {
			t.Errorf("run %d: staging counts %d bytes, %d are staged", run, got, total)
		}
		a.Close()
	}
}

// TestH2StatePrunedToLiveSet: entries of archived segments that Kafka
// deleted since are dropped from local state; entries of segments still on
// disk stay; a staged link left for an archived segment is removed.
func TestH2StatePrunedToLiveSet(t *testing.T) {
	logs, res := h2Logs(t)
	state, archiveDir := t.TempDir(), t.TempDir()
	a := h2Agent(t, logs, state, archiveDir, 0, 1<<30)
	defer a.Close()
	rep, err := a.RunOnce(context.Background())
	if err != nil || rep.Archived == 0 || rep.Failed != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	n := a.state.Len()
	if n != rep.Archived {
		t.Fatalf("state holds %d entries after archiving %d", n, rep.Archived)
	}
	// A crash between commit and unstage leaves a link behind.
	scans, err := scanLogDir(logs, a.snap().filter, false)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Partition("t", 0)
	base := p.Segments[0]
	var kept, gone candidate
	for _, ps := range scans {
		for _, c := range ps.Candidates {
			if c.DirPath == p.Dir && c.Base == base {
				gone = c
			}
		}
		if len(ps.Candidates) > 0 {
			kept = ps.Candidates[len(ps.Candidates)-1]
		}
	}
	if gone.DirPath == "" || kept.Base == base {
		t.Fatal("fixture has too few segments")
	}
	if ok, why, err := a.staging.stage(&kept); !ok {
		t.Fatal(why, err)
	}
	// Retention deletes the first segment of partition 0.
	for _, f := range gone.Files { // not the next segment's producer snapshot
		if strings.HasPrefix(f.Name, fmt.Sprintf("%020d.", base)) {
			if err := os.Remove(gone.path(f.Name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := a.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.wg.Wait()
	if _, ok := a.state.Get(gone.key()); ok {
		t.Errorf("state still holds the deleted segment: %s", gone.key())
	}
	if got := a.state.Len(); got != n-1 {
		t.Errorf("state holds %d entries, want %d", got, n-1)
	}
	if _, ok := a.state.Get(kept.key()); !ok {
		t.Error("entry of a segment still on disk was dropped")
	}
	if got := a.staging.Used(); got != 0 {
		t.Errorf("staging still holds %d bytes of archived segments", got)
	}
	if d := a.takeDone(); d.Lost != 0 {
		t.Error("an archived segment deleted by Kafka was recorded lost")
	}
}

// TestH2FalseLostEntryRetried: local state from an older agent that calls
// a segment lost (with its gap marker still pending) although the file is
// there: the segment is archived and no marker is written.
func TestH2FalseLostEntryRetried(t *testing.T) {
	logs, _ := h2Logs(t)
	state, archiveDir := t.TempDir(), t.TempDir()
	a := h2Agent(t, logs, state, archiveDir, time.Hour, 0)
	if _, err := a.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := h2Seen(a)
	if len(seen) < 2 {
		t.Fatalf("only %d rolled segments", len(seen))
	}
	c := seen[0].c
	gapKey := "v1/false/gaps/" + filepath.Base(c.DirPath) + ".json"
	if err := a.state.Put(stateEntry{Key: c.key(), Status: statusLost, Files: c.Files, Detail: "deleted by Kafka", At: time.Now(),
		GapKey: gapKey, GapBody: []byte(`{"format":"segvault-gap"}`)}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	a = h2Agent(t, logs, state, archiveDir, 0, 0)
	defer a.Close()
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archived != len(seen) || rep.Failed != 0 || rep.Lost != 0 {
		t.Fatalf("archived %d of %d: %+v", rep.Archived, len(seen), rep)
	}
	if e, ok := a.state.Get(c.key()); !ok || e.Status != statusArchived {
		t.Errorf("state of the falsely lost segment: %+v", e)
	}
	if ok, err := a.store.Exists(context.Background(), gapKey); err != nil || ok {
		t.Errorf("false gap marker written (%v)", err)
	}
}
