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

// Once in takeover, a standby keeps going when another standby's takeover
// uploads make the archive grow meanwhile (two standbys of a dead
// designated archiver), until the archive covers its rolled data.
func TestH39TakeoverSticksDespiteOtherStandby(t *testing.T) {
	a := h39Agent(t)
	o := a.ownerState()
	id := BrokerIdentity{BrokerID: 1, ClusterID: h28Cluster}
	const grace, scan = 8 * time.Second, time.Second
	t0 := o.started
	ps := h39Scan(6, t0.Add(-time.Hour))
	now := t0.Add(grace + scan)
	take, err := o.takeover(context.Background(), a, ps, id, now, grace)
	if err != nil || len(take) != 6 {
		t.Fatalf("first takeover %v (err %v), want all 6", take, err)
	}
	// Broker 3 (the other standby) uploads from the top, broker 1 from the
	// bottom, one each per scan.
	h39Uploaded(o, ps, 1, 0)
	h39Uploaded(o, ps, 3, 500)
	for i := 1; i < 3; i++ {
		now = now.Add(scan)
		take, err := o.takeover(context.Background(), a, ps, id, now, grace)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(i) * 100; !take[want] {
			t.Fatalf("scan %d: took %v, want base %d among them (still in takeover)", i, take, want)
		}
		h39Uploaded(o, ps, 1, int64(i)*100)
		h39Uploaded(o, ps, 3, int64(5-i)*100)
	}
	now = now.Add(scan)
	if take, err := o.takeover(context.Background(), a, ps, id, now, grace); err != nil || len(take) != 0 || o.part(ps.Path).takingOver {
		t.Fatalf("covered: took %v (err %v), in takeover %v; want nothing, back to standby", take, err, o.part(ps.Path).takingOver)
	}
}

// Of two standbys, the one with the higher broker id defers while the
// lower one is live; every agent applies the same rule.
func TestH39Defers(t *testing.T) {
	all := func(int32) bool { return true }
	not1 := func(id int32) bool { return id != 1 }
	cases := []struct {
		replicas         []int32
		designated, self int32
		live             func(int32) bool
		want             bool
	}{
		{[]int32{2, 1, 3}, 2, 1, all, false},
		{[]int32{2, 1, 3}, 2, 3, all, true},
		{[]int32{2, 1, 3}, 2, 3, not1, false},
		{[]int32{1, 3}, 1, 3, all, false}, // the designated one is not a standby
		{[]int32{3, 2, 1}, 1, 3, all, true},
	}
	for _, c := range cases {
		if got := Defers(c.replicas, c.designated, c.self, c.live); got != c.want {
			t.Errorf("Defers(%v, designated %d, self %d) = %v, want %v", c.replicas, c.designated, c.self, got, c.want)
		}
	}
}
