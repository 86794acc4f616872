package archive

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

func TestH29Info(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	h := time.Hour
	a.version("orders", 0, 1, 0, 100, now.Add(-5*h))
	a.version("orders", 0, 1, 100, 200, now.Add(-3*h))
	a.version("orders", 0, 1, 300, 400, now.Add(-2*h)) // 200..299 missing
	a.version("orders", 1, 2, 0, 50, now.Add(-10*h))
	a.gap("orders", 1, 2, 50, 80, now.Add(-9*h))
	a.version("orders", 1, 2, 80, 90, now.Add(-7*h))
	a.version("__consumer_offsets", 0, 1, 0, 10, now.Add(-100*h))
	a.version("__consumer_offsets", 0, 1, 0, 10, now.Add(-h)) // cleaner rewrite
	inv, err := ListPruneInventory(context.Background(), a.b, a.l, "", 4)
	if err != nil {
		t.Fatal(err)
	}
	info := Info(inv, now)
	if len(info.Clusters) != 1 {
		t.Fatalf("clusters %+v", info.Clusters)
	}
	c := info.Clusters[0]
	if c.Gaps != 2 || c.NewestOffset != 399 || len(c.Topics) != 2 || len(c.Brokers) != 2 {
		t.Fatalf("cluster %+v", c)
	}
	var orders TopicInfo
	for _, tp := range c.Topics {
		if tp.Topic == "orders" {
			orders = tp
		}
	}
	p0, p1 := orders.Partitions[0], orders.Partitions[1]
	if p0.NewestOffset != 399 || p0.RPO.D() != 2*h || len(p0.Gaps) != 1 || p0.Gaps[0] != (InfoGap{200, 300, "segments missing from the archive"}) {
		t.Errorf("orders-0: %+v", p0)
	}
	if p1.RPO.D() != 7*h || len(p1.Gaps) != 1 || p1.Gaps[0].From != 50 || p1.Gaps[0].To != 80 {
		t.Errorf("orders-1: %+v", p1)
	}
	if want := now.Add(-5*h - time.Second); !p0.Earliest.Equal(want) || !p0.Latest.Equal(now.Add(-2*h)) {
		t.Errorf("orders-0 window %s..%s, want %s..%s", p0.Earliest, p0.Latest, want, now.Add(-2*h))
	}
	for _, b := range c.Brokers {
		want := map[int32]time.Duration{1: 2 * h, 2: 7 * h}[b.Broker]
		if b.RPO.D() != want {
			t.Errorf("broker %d RPO %s, want %s (%+v)", b.Broker, b.RPO, want, b)
		}
	}
	if c.RawBytes == 0 || c.StoredBytes <= c.RawBytes {
		t.Errorf("sizes raw %d stored %d (stored counts manifests too)", c.RawBytes, c.StoredBytes)
	}
}

// TestH29PruneScale times a prune of 10,000 partitions (each with a
// superseded and a live version of one segment, and a log-dir capture per
// 100 partitions) in a local store: the listing, the manifest reads, the
// plan and the deletions. SEGVAULT_H29_SCALE=1 to run it.
func TestH29PruneScale(t *testing.T) {
	if testing.Short() || !h29Scale() {
		t.Skip("set SEGVAULT_H29_SCALE=1")
	}
	a := h29NewLocal(t)
	now := time.Now().UTC()
	const n = 10000
	t0 := time.Now()
	for p := range int32(n) {
		topic := fmt.Sprintf("topic-%03d", p/100)
		a.version(topic, p%100, 1, 0, 100, now.Add(-10*24*time.Hour))
		a.version(topic, p%100, 1, 0, 100, now.Add(-5*24*time.Hour))
	}
	t.Logf("built %d partitions in %s", n, time.Since(t0))
	inv, err := ListPruneInventory(context.Background(), a.b, a.l, "", 16)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	plan := PlanPrune(inv, a.l, PruneOptions{KeepWithin: 24 * time.Hour, Now: now})
	t.Logf("plan alone: %s for %d units", time.Since(t1), len(plan.Units))
	rep := a.prune(PruneOptions{KeepWithin: 24 * time.Hour, Now: now, DeleteDelay: -1, Concurrency: 16})
	if len(rep.Units) != n {
		t.Fatalf("%d units, want %d", len(rep.Units), n)
	}
	t.Logf("prune of %d partitions: %s, %d objects deleted, %d bytes freed", n, rep.Duration, len(rep.Deleted), rep.BytesFreed)
	rep2 := a.prune(PruneOptions{KeepWithin: 24 * time.Hour, Now: now, DeleteDelay: -1, Concurrency: 16})
	t.Logf("second prune (nothing to do) of %d partitions: %s", n, rep2.Duration)
	if len(rep2.Deleted) != 0 {
		t.Fatalf("second prune deleted %d", len(rep2.Deleted))
	}
}

func h29Scale() bool { return os.Getenv("SEGVAULT_H29_SCALE") != "" }

// TestH29PlanCompactedScale times PlanPrune alone on one compacted
// partition of 5,000 segments rewritten 4 times each over 10 days (20,000
// versions, 5,000 of them archived within the 2-day window): the plan must
// stay far from quadratic.
func TestH29PlanCompactedScale(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	now := time.Now().UTC()
	inv := &PruneInventory{Sizes: map[string]int64{}}
	const bases = 5000
	for r := range 4 {
		for i := range int64(bases) {
			at := now.Add(-time.Duration(3-r)*96*time.Hour - time.Hour + time.Duration(i)*100*time.Millisecond)
			key := fmt.Sprintf("v1/c/topics/kv/0/x/segments/%020d/1-%012d/manifest.json", i*10, r)
			inv.Versions = append(inv.Versions, PruneVersion{Cluster: "c", Manifest: uploaderInfo(key, at),
				M: &SegmentManifest{Topic: "kv", TopicID: "x", Kind: KindSegment, BaseOffset: i * 10, NextSegmentBase: i*10 + 10, CreatedAt: at, Summary: &SegmentSummary{}}})
		}
	}
	t0 := time.Now()
	plan := PlanPrune(inv, NewLayout(""), PruneOptions{KeepWithin: 2 * 24 * time.Hour, Now: now})
	d := time.Since(t0)
	t.Logf("plan of %d versions (one compacted partition): %s, %d deletions, %d kept", len(inv.Versions), d, len(plan.Units), plan.KeptVersions)
	if len(plan.Units) != 2*bases || plan.KeptVersions != 2*bases {
		t.Errorf("%d deletions, %d kept; want %d each (rounds 0 and 1 go; round 2 was live at the window start)", len(plan.Units), plan.KeptVersions, 2*bases)
	}
}

func uploaderInfo(key string, at time.Time) uploader.ObjectInfo {
	return uploader.ObjectInfo{Key: key, Size: 100, ModTime: at}
}
