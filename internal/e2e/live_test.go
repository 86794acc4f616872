package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// rolledSet remembers every rolled segment version seen on disk:
// "topic/partition/topicID/base" -> set of .log SHA-256 prefixes.
type rolledSet map[string]map[string]bool

// observe records the rolled segments (not the active one) of every live
// partition dir of the broker.
func (rs rolledSet) observe(t *testing.T, res *brokersim.Result) {
	t.Helper()
	for _, tp := range res.Topics {
		for _, p := range tp.Partitions {
			for i := 0; i+1 < len(p.Segments); i++ {
				path := filepath.Join(p.Dir, segment.FormatName(p.Segments[i], segment.KindLog))
				data, err := os.ReadFile(path)
				if err != nil {
					continue // deleted meanwhile
				}
				sum := sha256.Sum256(data)
				k := fmt.Sprintf("%s/%d/%s/%d", tp.Name, p.Partition, tp.ID, p.Segments[i])
				if rs[k] == nil {
					rs[k] = map[string]bool{}
				}
				rs[k][hex.EncodeToString(sum[:])[:12]] = true
			}
		}
	}
}

// TestLiveBrokerArchive runs the agent daemon against MinIO beside a live
// simulated broker that appends and rolls, deletes old segments (retention),
// swaps compacted segments and deletes and re-creates a topic. Every rolled
// segment version is archived exactly once, no active segment is ever
// archived, and every manifest verifies.
func TestLiveBrokerArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	br, err := brokersim.Start(ctx, brokersim.Config{Dir: dir, NodeID: 2, SegmentBytes: 24 << 10, Seed: 11,
		FileDeleteDelay: 300 * time.Millisecond,
		Topics: []brokersim.TopicSpec{
			{Name: "live", Partitions: 2, Codec: "none", Idempotent: true, Records: 500},
			{Name: "kv", Compacted: true, Idempotent: true, Records: 800, KeySpace: 50},
			{Name: "txn", Transactional: true, AbortEvery: 3, Records: 300},
			{Name: "doomed", Codec: "lz4", Records: 800},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	b := s3Bucket(t, miniotest.Start(t))
	metrics := agent.NewMetrics(nil)
	a := newAgent(t, b, agent.Config{LogDirs: []string{dir}, ScanInterval: 400 * time.Millisecond, SettleTime: 100 * time.Millisecond,
		StagingBudget: 1 << 30}, metrics)
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx, nil) }()
	t.Cleanup(stop)

	rolled := rolledSet{}
	for round := 0; round < 12; round++ {
		for _, topic := range []string{"live", "kv", "txn"} {
			if _, err := br.Append(ctx, topic, 150); err != nil {
				t.Fatal(err)
			}
		}
		if round < 6 {
			if _, err := br.Append(ctx, "doomed", 150); err != nil {
				t.Fatal(err)
			}
		}
		rolled.observe(t, br.Result())
		switch round {
		case 3, 7:
			if _, err := br.DeleteOldestSegment("live", 0); err != nil { // retention
				t.Fatal(err)
			}
		case 5, 9:
			p := br.Result().Partition("kv", 0)
			if len(p.Segments) > 1 {
				if err := br.Compact("kv", 0, p.Segments[0]); err != nil { // a cleaner swap
					t.Fatal(err)
				}
			}
		case 6:
			time.Sleep(time.Second) // let the agent archive doomed's rolled segments
			if err := br.DeleteTopic(ctx, "doomed"); err != nil {
				t.Fatal(err)
			}
			if err := br.CreateTopic(ctx, brokersim.TopicSpec{Name: "doomed", Codec: "zstd", Records: 800}); err != nil {
				t.Fatal(err)
			}
		}
		rolled.observe(t, br.Result())
		time.Sleep(150 * time.Millisecond)
	}
	// Roll everything so the last data is archivable, then let the agent catch up.
	for _, tp := range br.Result().Topics {
		for _, p := range tp.Partitions {
			if _, err := br.Append(ctx, tp.Name, 1); err == nil {
				br.Roll(tp.Name, p.Partition)
			}
		}
	}
	rolled.observe(t, br.Result())
	waitFor(t, 3*time.Minute, func() bool {
		got := archivedVersions(t, b)
		for k, versions := range rolled {
			for v := range versions {
				if !got[k][v] {
					return false
				}
			}
		}
		return true
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Exactly once, and never an active segment: every archived version is one
	// the broker had rolled, so no partial (active) content was ever committed.
	got := archivedVersions(t, b)
	for k, versions := range got {
		for v := range versions {
			if !rolled[k][v] {
				t.Errorf("%s: archived version %s was never a rolled segment on disk (archived while active?)", k, v)
			}
		}
	}
	if lost := readCounter(metrics.SegmentsLost); lost != 0 {
		t.Errorf("%v segments lost", lost)
	}
	n := 0
	for _, v := range rolled {
		n += len(v)
	}
	if archived := readCounter(metrics.SegmentsArchived); int(archived) != n {
		t.Errorf("agent committed %v segment versions, the broker rolled %d", archived, n)
	}
	// Every manifest verifies: every object present and intact.
	scrubAll(t, b)
	t.Logf("%d rolled segment versions of %d segments archived exactly once", n, len(got))
}

// archivedVersions lists committed versions like rolledSet.
func archivedVersions(t *testing.T, b uploader.Bucket) rolledSet {
	out := rolledSet{}
	for _, m := range manifests(t, b) {
		k := fmt.Sprintf("%s/%d/%s/%d", m.Topic, m.Partition, m.TopicID, m.BaseOffset)
		if out[k] == nil {
			out[k] = map[string]bool{}
		}
		if out[k][m.ContentID] {
			t.Errorf("%s: version %s committed twice", k, m.ContentID)
		}
		out[k][m.ContentID] = true
	}
	return out
}

// scrubAll re-reads every object of every manifest and checks it.
func scrubAll(t *testing.T, b uploader.Bucket) {
	t.Helper()
	ctx := context.Background()
	for _, m := range manifests(t, b) {
		for _, f := range m.Files {
			rc, err := archive.OpenFile(ctx, b, f, archive.DecodeOptions{})
			if err != nil {
				t.Errorf("%s %s: %v", m.Topic, f.Name, err)
				continue
			}
			buf := make([]byte, 1<<16)
			for {
				_, err := rc.Read(buf)
				if err != nil {
					if err.Error() != "EOF" {
						t.Errorf("%s %s: %v", m.Topic, f.Name, err)
					}
					break
				}
			}
			rc.Close()
		}
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
