package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// h38Agent is an agent of a simulated broker on bucket b.
func h38Agent(t *testing.T, b uploader.Bucket, cfg Config) *Agent {
	t.Helper()
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// h38TailBrokers returns, per partition of topic t, the brokers whose tail
// captures are committed in b (captures counted).
func h38TailBrokers(t *testing.T, b uploader.Bucket) map[int32]map[int32]int {
	t.Helper()
	ctx := context.Background()
	out := map[int32]map[int32]int{}
	err := b.List(ctx, "", func(oi uploader.ObjectInfo) error {
		if !strings.Contains(oi.Key, "/tails/") || !strings.HasSuffix(oi.Key, ".json") {
			return nil
		}
		data, err := uploader.ReadAll(ctx, b, oi.Key, archive.MaxTailManifestSize)
		if err != nil {
			return err
		}
		m, err := archive.DecodeTailManifest(oi.Key, data)
		if err != nil {
			return err
		}
		for _, c := range m.Captures {
			if c.Topic != "t" {
				continue
			}
			if out[c.Partition] == nil {
				out[c.Partition] = map[int32]int{}
			}
			out[c.Partition][m.BrokerID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// With archive-replicas=designated, only the designated archiver of a
// partition captures its tail; a standby's tracks are skipped (counted as
// tail_skipped_total{reason="standby"}); mode all captures every replica.
func TestH38TailDesignatedOnly(t *testing.T) {
	brokers := h28Brokers(t)[:2] // p0: replicas [1 2 3] led by 2; p1: broker 1 designated
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	var standby float64
	for _, br := range brokers {
		a := h38Agent(t, b, br.cfg)
		if _, err := a.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		newTailer(a).round(context.Background())
		if br.id == 1 {
			standby = h25Counter(a.metrics.TailSkipped.WithLabelValues("standby"))
		}
	}
	got := h38TailBrokers(t, b)
	if len(got[0]) != 1 || got[0][2] == 0 {
		t.Fatalf("p0 tail captured by %v, want only broker 2 (designated)", keysOf(got[0]))
	}
	if len(got[1]) != 1 || got[1][1] == 0 {
		t.Fatalf("p1 tail captured by %v, want only broker 1 (designated)", keysOf(got[1]))
	}
	if standby != 1 {
		t.Fatalf("broker 1: tail_skipped_total{reason=standby} = %v, want 1 (p0)", standby)
	}
	// Restore finds the designated archiver's captures: every partition
	// comes back as its designated broker's disk holds it, active segment
	// included.
	h38RestoreMatches(t, b, map[int32]string{0: brokers[1].dir, 1: brokers[0].dir})

	b2, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range brokers {
		cfg := br.cfg
		cfg.ArchiveReplicas, cfg.StateDir = ArchiveReplicasAll, t.TempDir()
		a := h38Agent(t, b2, cfg)
		if _, err := a.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		newTailer(a).round(context.Background())
	}
	if got := h38TailBrokers(t, b2); len(got[0]) != 2 || len(got[1]) != 2 {
		t.Fatalf("mode all: p0 by %v, p1 by %v; want both brokers", keysOf(got[0]), keysOf(got[1]))
	}
}

// The designated archiver's agent is not running: the standby leaves the
// tail alone until its pass takes the partition over, then captures it.
func TestH38TailStandbyTakesOver(t *testing.T) {
	br := h28Brokers(t)[0] // broker 1: standby of p0 (broker 2 never runs)
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := br.cfg
	cfg.TakeoverGrace = 2 * time.Second
	a := h38Agent(t, b, cfg)
	tl := newTailer(a)
	if _, err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	tl.round(context.Background())
	if got := h38TailBrokers(t, b); len(got[0]) != 0 {
		t.Fatalf("p0 tail captured by %v before the takeover grace passed", keysOf(got[0]))
	}
	time.Sleep(cfg.TakeoverGrace + 100*time.Millisecond)
	if _, err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h28Archived(t, b); got[0][1] == nil {
		t.Fatalf("broker 1 did not take p0's rolled segments over: %v", got)
	}
	tl.round(context.Background())
	if got := h38TailBrokers(t, b); len(got[0]) != 1 || got[0][1] == 0 {
		t.Fatalf("p0 tail captured by %v after the takeover, want broker 1", keysOf(got[0]))
	}
}

// MeasureTailCost (make bench's tail-capture cost figure): one pack and one
// manifest per round whatever the partition count, every byte captured.
func TestH38MeasureTailCost(t *testing.T) {
	src, err := os.ReadFile(h25StatusLog)
	if err != nil {
		t.Fatal(err)
	}
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := MeasureTailCost(context.Background(), TailCostInput{Dir: t.TempDir(), Bucket: b, Partitions: 200, Rounds: 3, BatchesPerRound: 2,
		Source: src, SourceName: h25StatusLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v: %.1f PUTs/min (per-partition upload %.0f), %.3f bytes stored per byte produced", c, c.PutsPerMinute(), c.PerPartitionPutsPerMinute(), c.StoredPerProduced())
	if c.Puts != 6 || c.PerPartitionPuts != 1200 || c.Produced == 0 || c.PackBytes == 0 || c.ManifestBytes == 0 {
		t.Fatalf("%+v", c)
	}
	caps, n := h25Captures(t, b)
	if n != 3 || len(caps) != 600 {
		t.Fatalf("%d manifests, %d captures; want 3 and 600", n, len(caps))
	}
	var raw int64
	for _, cp := range caps {
		raw += int64(len(cp.raw))
	}
	if raw != c.Produced {
		t.Fatalf("captured %d bytes, produced %d", raw, c.Produced)
	}
}

// h38RestoreMatches restores topic t from b and compares each partition's
// .log files with the dir of the broker given for it.
func h38RestoreMatches(t *testing.T, b uploader.Bucket, want map[int32]string) {
	t.Helper()
	ctx := context.Background()
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1, Topics: regexp.MustCompile("^t$")}, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, pp := range plan.Partitions {
		if pp.Tail == nil || pp.Tail.Captures == 0 {
			t.Fatalf("t-%d: the plan uses no tail capture: %+v", pp.Partition, pp.Tail)
		}
	}
	target := t.TempDir()
	if _, err := restore.Run(ctx, src, plan, restore.Options{Targets: []string{target}, ToOffset: -1, ToTime: -1, NodeID: -1}); err != nil {
		t.Fatal(err)
	}
	for p, dir := range want {
		name := fmt.Sprintf("t-%d", p)
		logs, err := filepath.Glob(filepath.Join(dir, name, "*.log"))
		if err != nil || len(logs) == 0 {
			t.Fatalf("%s: %v %v", name, logs, err)
		}
		for _, l := range logs {
			exp, err := os.ReadFile(l)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(target, name, filepath.Base(l)))
			if err != nil {
				t.Fatalf("restored %s: %v", name, err)
			}
			if !bytes.Equal(got, exp) {
				t.Fatalf("restored %s/%s: %d bytes, the designated broker's file %d", name, filepath.Base(l), len(got), len(exp))
			}
		}
	}
}
