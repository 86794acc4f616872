package index

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzH28MetadataApply: Apply never panics, and a record it rejects
// changes nothing.
func FuzzH28MetadataApply(f *testing.F) {
	id := TopicID{1}
	for _, s := range [][]byte{
		h28Topic("events", id),
		h28Partition(0, id, []int32{1, 2}, []int32{1}, 1, 3, 1),
		h28PartitionChange(0, id, 2, []int32{2}, []int32{2, 1}),
		h28Register(1, 5, false),
		h28IDEpoch(MetaBrokerRegistrationChange, 1, 5, []byte{1, 0, 1, 1}),
		h28RemoveTopic(id),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		m := NewClusterMetadata()
		_ = m.Apply(h28Topic("events", id))
		_ = m.Apply(h28Partition(0, id, []int32{1, 2}, []int32{1}, 1, 3, 0))
		_ = m.Apply(h28Register(1, 5, false))
		before := m.Clone()
		if err := m.Apply(v); err != nil {
			if len(m.Partitions) != len(before.Partitions) || len(m.TopicNames) != len(before.TopicNames) ||
				len(m.Brokers) != len(before.Brokers) || m.Records != before.Records {
				t.Fatalf("rejected record changed the image: %v", err)
			}
			p, q := m.Partitions[PartitionKey{id, 0}], before.Partitions[PartitionKey{id, 0}]
			if p.Leader != q.Leader || p.LeaderEpoch != q.LeaderEpoch || len(p.Replicas) != len(q.Replicas) {
				t.Fatalf("rejected record changed partition 0: %+v -> %+v", q, p)
			}
		}
	})
}

func BenchmarkH28MetadataSnapshot(b *testing.B) {
	path := filepath.Join(h28MetaFixtureDir, "00000000000000060500-0000000025.checkpoint")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m := NewClusterMetadata()
		if err := applyMetadataFile(m, path, 0, 0, true); err != nil {
			b.Fatal(err)
		}
	}
}
