package archive

import (
	"context"
	"testing"
	"time"
)

// TestH36InfoStoredCountsTails: info's stored size is the objects in the
// bucket: a cluster's and a broker's count the tail captures (manifest and
// pack), gap markers and log-dir captures too, not only segment versions.
func TestH36InfoStoredCountsTails(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	a.versionV2("kv", 0, 1, 0, 100, now.Add(-time.Hour), "")
	tm, pk := a.h36Tail("kv", 0, 1, 1, 100, 0, 4000, 100, 149, now.Add(-time.Minute))
	inv, err := ListPruneInventory(context.Background(), a.b, a.l, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	var versions int64
	for _, v := range inv.Versions {
		versions += v.Manifest.Size
		for _, d := range v.Data {
			versions += d.Size
		}
	}
	tails := inv.Sizes[tm] + inv.Sizes[pk]
	info := Info(inv, now)
	if len(info.Clusters) != 1 || len(info.Clusters[0].Brokers) != 1 {
		t.Fatalf("info: %+v", info)
	}
	if c := info.Clusters[0]; c.StoredBytes != versions+tails {
		t.Errorf("cluster stored %d, want %d (versions %d + tail manifest and pack %d)", c.StoredBytes, versions+tails, versions, tails)
	}
	if b := info.Clusters[0].Brokers[0]; b.StoredBytes != versions+tails {
		t.Errorf("broker stored %d, want %d", b.StoredBytes, versions+tails)
	}
}

// TestH36InfoBucketClockAhead: restore uses the newest version whatever its
// time, so info does too: a version whose manifest's modification time (the
// bucket's clock) is ahead of the host's still counts for the newest offset
// and leaves no gap.
func TestH36InfoBucketClockAhead(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	a.versionV2("kv", 0, 1, 0, 100, now.Add(-time.Hour), "")
	a.versionV2("kv", 0, 1, 100, 200, now.Add(10*time.Minute), "")
	inv, err := ListPruneInventory(context.Background(), a.b, a.l, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	info := Info(inv, now)
	p := info.Clusters[0].Topics[0].Partitions[0]
	if p.NewestOffset != 199 || len(p.Gaps) != 0 {
		t.Errorf("newest offset %d (want 199), gaps %v", p.NewestOffset, p.Gaps)
	}
}
