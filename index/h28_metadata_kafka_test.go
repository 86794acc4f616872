package index

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/segvault/segvault/internal/kafkatest"
)

// A real broker's own metadata log (no snapshot yet, or one plus the log
// after it) decodes to what the broker reports over the protocol: topics
// with their ids, partitions added by CreatePartitions, a deleted topic
// gone, the broker registered and unfenced, each partition led by it.
func TestH28MetadataRealBroker(t *testing.T) {
	for _, version := range kafkatest.Versions {
		t.Run(version, func(t *testing.T) {
			b := kafkatest.Start(t, kafkatest.Options{Version: version})
			b.CreateTopic(t, "h28-a", 3, nil)
			b.CreateTopic(t, "h28-b", 2, nil)
			b.CreateTopic(t, "h28-gone", 1, nil)
			adm := b.Admin(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := adm.CreatePartitions(ctx, 2, "h28-a"); err != nil {
				t.Fatal(err)
			}
			if _, err := adm.DeleteTopics(ctx, "h28-gone"); err != nil {
				t.Fatal(err)
			}
			var topics kadm.TopicDetails
			deadline := time.Now().Add(20 * time.Second)
			for {
				var err error
				if topics, err = adm.ListTopics(ctx, "h28-a", "h28-b"); err != nil {
					t.Fatal(err)
				}
				if len(topics["h28-a"].Partitions) == 5 || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			dir := filepath.Join(b.LogDir(), MetadataDirName)
			check := func(m *ClusterMetadata, running bool) {
				t.Helper()
				for _, name := range []string{"h28-a", "h28-b"} {
					td := topics[name]
					want := len(td.Partitions)
					id, ok := m.TopicIDs[name]
					if !ok || [16]byte(id) != [16]byte(td.ID) {
						t.Fatalf("%s: id %v (%v), broker says %v", name, id, ok, td.ID)
					}
					for p := range int32(want) {
						pa, ok := m.Partition(name, p)
						if !ok || !slices.Equal(pa.Replicas, []int32{b.NodeID}) {
							t.Fatalf("%s-%d: %+v %v; broker says %+v", name, p, pa, ok, td.Partitions[p])
						}
						// A controlled shutdown moves leadership away: with
						// one broker the partitions are left leaderless
						// (PartitionChangeRecord Leader=-1, epoch+1).
						if running && (pa.Leader != b.NodeID || pa.LeaderEpoch != td.Partitions[p].LeaderEpoch) ||
							!running && (pa.Leader != -1 || pa.LeaderEpoch != td.Partitions[p].LeaderEpoch+1) {
							t.Fatalf("%s-%d (running %v): %+v; broker said %+v", name, p, running, pa, td.Partitions[p])
						}
					}
					if _, ok := m.Partition(name, int32(want)); ok {
						t.Fatalf("%s: more partitions than the broker reports", name)
					}
				}
				if _, ok := m.TopicIDs["h28-gone"]; ok {
					t.Fatal("deleted topic still in the image")
				}
				live, known := m.BrokerLive(b.NodeID)
				if !known || live != running {
					t.Fatalf("broker %d: live %v known %v, running %v", b.NodeID, live, known, running)
				}
				if len(m.Skipped) > 0 {
					t.Logf("skipped: %v", m.Skipped)
				}
			}
			// Read while the broker runs (its active segment is being written).
			m, load, err := LoadClusterMetadata(dir)
			if err != nil {
				t.Fatalf("live read: %v", err)
			}
			t.Logf("live: %+v", load)
			check(m, true)
			if err := b.Stop(); err != nil {
				t.Fatal(err)
			}
			m, load, err = LoadClusterMetadata(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("stopped: %+v records %d", load, m.Records)
			check(m, false)
			if n := len(topics["h28-a"].Partitions); n != 5 {
				t.Fatalf("h28-a has %d partitions", n)
			}
		})
	}
}
