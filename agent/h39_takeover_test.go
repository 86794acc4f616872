package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// h39Agent is an agent on an empty local bucket (the test feeds the
// standby's view of the archive by hand).
func h39Agent(t *testing.T) *Agent {
	t.Helper()
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.LowPriority = []string{t.TempDir()}, "file://x", t.TempDir(), false
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// h39Scan is a partition with n rolled segments of 100 offsets each, last
// appended at rolled, plus an active one.
func h39Scan(n int, rolled time.Time) partitionScan {
	ps := partitionScan{Path: "/logs/t-0", Dir: segment.DirName{Topic: "t", Partition: 0}, Active: int64(n) * 100}
	for i := 0; i <= n; i++ {
		c := candidate{Kind: archive.KindSegment, Base: int64(i) * 100, NextBase: int64(i+1) * 100, Files: []fileStat{{MTime: rolled}}}
		if i == n {
			c.Active, c.NextBase = true, -1
		}
		ps.Candidates = append(ps.Candidates, c)
	}
	return ps
}

// h39Uploaded records, as a listing would find it, this broker's manifest
// of the segment at base (what the uploader does after a takeover).
func h39Uploaded(o *ownership, ps partitionScan, self int32, base int64) {
	sp := o.part(ps.Path)
	k := fmt.Sprintf("own/%d/%020d.json", self, base)
	sp.manifests[k] = &OffsetRange{Start: base, End: base + 100}
	sp.broker[k] = self
}

// A standby with 5 uncovered rolled segments whose uploads finish one per
// scan (the uploader's pace) takes over all of them within one grace plus
// one scan interval per segment at most: its own uploads are archive growth
// that must not restart the grace clock (issue 16: "taken over within the
// grace period, with no gap").
func TestH39TakeoverNoGraceRestart(t *testing.T) {
	a := h39Agent(t)
	o := a.ownerState()
	id := BrokerIdentity{BrokerID: 1, ClusterID: h28Cluster}
	const grace, scan = 8 * time.Second, time.Second
	t0 := o.started
	ps := h39Scan(5, t0.Add(-time.Hour))
	done := map[int64]bool{}
	var last time.Time
	for now := t0; now.Sub(t0) <= grace+7*scan && len(done) < 5; now = now.Add(scan) {
		take, err := o.takeover(context.Background(), a, ps, id, now, grace)
		if err != nil {
			t.Fatal(err)
		}
		if len(take) > 0 && len(done) == 0 {
			if len(take) != 5 || now.Sub(t0) > grace+scan {
				t.Fatalf("first takeover at %v takes %v, want all 5 within grace + one scan", now.Sub(t0), take)
			}
		}
		// one upload per pass, lowest base first
		for b := int64(0); b < 500; b += 100 {
			if take[b] && !done[b] {
				h39Uploaded(o, ps, id.BrokerID, b)
				done[b], last = true, now
				break
			}
		}
	}
	if len(done) < 5 {
		t.Fatalf("took over %d of 5 segments within grace+7 scans; own uploads restart the grace clock", len(done))
	}
	if d := last.Sub(t0); d > grace+6*scan {
		t.Fatalf("last segment taken over %v after start, want <= grace + 6 scans (%v)", d, grace+6*scan)
	}
	// Covered now: back to standby, nothing more to take.
	take, err := o.takeover(context.Background(), a, ps, id, last.Add(scan), grace)
	if err != nil || len(take) != 0 {
		t.Fatalf("after full coverage took %v (err %v), want nothing", take, err)
	}
	if o.part(ps.Path).takingOver {
		t.Fatal("still in takeover after the archive covers every rolled segment")
	}
}

// A designated archiver working through a backlog (coverage growing from
// another broker) keeps its partition: the standby does not take over.
func TestH39BacklogKeepsPartition(t *testing.T) {
	a := h39Agent(t)
	o := a.ownerState()
	id := BrokerIdentity{BrokerID: 1, ClusterID: h28Cluster}
	const grace, scan = 8 * time.Second, time.Second
	t0 := o.started
	ps := h39Scan(20, t0.Add(-time.Hour))
	for i := 0; i < 20; i++ {
		now := t0.Add(time.Duration(i+1) * 2 * time.Second) // designated uploads one segment every 2 s
		h39Uploaded(o, ps, 2, int64(i)*100)
		take, err := o.takeover(context.Background(), a, ps, id, now, grace)
		if err != nil {
			t.Fatal(err)
		}
		if len(take) != 0 {
			t.Fatalf("at %v took over %v while the designated archiver's backlog progresses", now.Sub(t0), take)
		}
	}
}
