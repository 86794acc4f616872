package index

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const h28MetaFixtureDir = fixtureRoot + "/ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/" + MetadataDirName

func h28RequireFixture(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(h28MetaFixtureDir); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
}

// The three real snapshots of a Kafka 3.7 KRaft cluster decode completely:
// every Topic and Partition record the catalog lists is applied, and the
// image agrees with the partition dirs on disk (partition.metadata topic ids).
func TestH28MetadataFixtureSnapshots(t *testing.T) {
	h28RequireFixture(t)
	for _, tc := range []struct {
		name               string
		topics, partitions int
	}{
		{"00000000000000007364-0000000001.checkpoint", 8, 134},
		{"00000000000000021265-0000000006.checkpoint", 8, 134},
		{"00000000000000060500-0000000025.checkpoint", 9, 139},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewClusterMetadata()
			if err := applyMetadataFile(m, filepath.Join(h28MetaFixtureDir, tc.name), 0, 0, true); err != nil {
				t.Fatal(err)
			}
			if len(m.TopicNames) != tc.topics || len(m.Partitions) != tc.partitions {
				t.Fatalf("topics %d partitions %d, want %d %d (skipped %v)", len(m.TopicNames), len(m.Partitions), tc.topics, tc.partitions, m.Skipped)
			}
			// RegisterBroker v3 decoded: the single broker, node 1.
			if b, ok := m.Brokers[1]; !ok || len(m.Brokers) != 1 {
				t.Fatalf("brokers %v", m.Brokers)
			} else {
				t.Logf("broker 1 epoch %d fenced %v; skipped %v", b.Epoch, b.Fenced, m.Skipped)
			}
			for k, p := range m.Partitions {
				if p.Topic == "" || !slices.Equal(p.Replicas, []int32{1}) || p.Leader != 1 || p.LeaderEpoch < 0 {
					t.Fatalf("%v: %+v", k, p)
				}
			}
			// Config, FeatureLevel, ProducerIds, RegisterController and
			// ZkMigrationState records are skipped and counted.
			if m.Skipped["api key 4 v0"] != 16 {
				t.Errorf("ConfigRecord skipped %d, want 16 (%v)", m.Skipped["api key 4 v0"], m.Skipped)
			}
		})
	}
}

// LoadClusterMetadata picks the newest snapshot; its topic ids match the
// partition.metadata files the broker wrote next to the data.
func TestH28MetadataFixtureLoadMatchesPartitionDirs(t *testing.T) {
	h28RequireFixture(t)
	m, load, err := LoadClusterMetadata(h28MetaFixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	if load.Snapshot != "00000000000000060500-0000000025.checkpoint" || load.EndOffset != 60500 || len(load.Segments) != 0 {
		t.Fatalf("load %+v", load)
	}
	dirs, err := filepath.Glob(filepath.Join(filepath.Dir(h28MetaFixtureDir), "*", "partition.metadata"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("glob: %v %d", err, len(dirs))
	}
	matched := 0
	for _, pm := range dirs {
		dir := filepath.Base(filepath.Dir(pm))
		if dir == MetadataDirName {
			continue
		}
		data, err := os.ReadFile(pm)
		if err != nil {
			t.Fatal(err)
		}
		var idStr string
		for _, line := range slices.Collect(func(yield func(string) bool) {
			for _, l := range splitLines(string(data)) {
				if !yield(l) {
					return
				}
			}
		}) {
			if v, ok := cutPrefix(line, "topic_id: "); ok {
				idStr = v
			}
		}
		i := lastDash(dir)
		topic, part := dir[:i], dir[i+1:]
		var pn int32
		for _, c := range part {
			pn = pn*10 + int32(c-'0')
		}
		p, ok := m.Partition(topic, pn)
		if !ok {
			t.Errorf("%s: not in the metadata image", dir)
			continue
		}
		if p.TopicID.String() != idStr {
			t.Errorf("%s: topic id %s in metadata, %s in partition.metadata", dir, p.TopicID, idStr)
		}
		matched++
	}
	if matched < 130 {
		t.Fatalf("only %d partition dirs matched", matched)
	}
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func lastDash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '-' {
			return i
		}
	}
	return -1
}

// Hand-built records: changes, removals, fencing, unknown types and
// versions, and malformed records that change nothing.
func TestH28MetadataApply(t *testing.T) {
	id := TopicID{1, 2, 3}
	m := NewClusterMetadata()
	must := func(v []byte) {
		t.Helper()
		if err := m.Apply(v); err != nil {
			t.Fatal(err)
		}
	}
	must(h28Topic("events", id))
	must(h28Partition(0, id, []int32{3, 1, 2}, []int32{3, 1, 2}, 3, 5, 1))
	must(h28Partition(1, id, []int32{1, 2, 3}, []int32{1, 2, 3}, 1, 0, 2))
	p, ok := m.Partition("events", 0)
	if !ok || p.Leader != 3 || p.LeaderEpoch != 5 || !slices.Equal(p.Replicas, []int32{3, 1, 2}) {
		t.Fatalf("%+v %v", p, ok)
	}
	// Leader change to none, ISR shrinks.
	must(h28PartitionChange(0, id, -1, []int32{1}, nil))
	p, _ = m.Partition("events", 0)
	if p.Leader != -1 || p.LeaderEpoch != 6 || !slices.Equal(p.ISR, []int32{1}) || !slices.Equal(p.Replicas, []int32{3, 1, 2}) {
		t.Fatalf("after change: %+v", p)
	}
	// ISR-only change keeps the leader (-2 = absent tag).
	must(h28PartitionChange(0, id, leaderUnchanged, []int32{1, 2}, []int32{2, 1}))
	p, _ = m.Partition("events", 0)
	if p.Leader != -1 || p.LeaderEpoch != 6 || !slices.Equal(p.Replicas, []int32{2, 1}) {
		t.Fatalf("after reassignment: %+v", p)
	}
	// Brokers: register (fenced), unfence, fence via registration change.
	must(h28Register(2, 77, true))
	if live, known := m.BrokerLive(2); live || !known {
		t.Fatal("registered broker should be fenced")
	}
	must(h28IDEpoch(MetaUnfenceBroker, 2, 77, nil))
	if live, _ := m.BrokerLive(2); !live {
		t.Fatal("unfenced broker should be live")
	}
	must(h28IDEpoch(MetaBrokerRegistrationChange, 2, 77, []byte{1, 0, 1, 1})) // tag 0 Fenced=1
	if live, _ := m.BrokerLive(2); live {
		t.Fatal("fenced by registration change")
	}
	must(h28IDEpoch(MetaFenceBroker, 2, 76, nil)) // other incarnation: ignored
	must(h28IDEpoch(MetaUnregisterBroker, 2, 77, nil))
	if _, known := m.BrokerLive(2); known {
		t.Fatal("unregistered broker still known")
	}
	// Unknown type, newer version: skipped and counted.
	must([]byte{1, 99, 0, 0})
	must(append([]byte{1, MetaPartition, 9}, 0xff))
	if m.Skipped["api key 99 v0"] != 1 || m.Skipped["api key 3 v9"] != 1 {
		t.Fatalf("skipped %v", m.Skipped)
	}
	// Malformed records change nothing.
	before := m.Clone()
	for name, v := range map[string][]byte{
		"truncated partition": h28Partition(2, id, []int32{1}, []int32{1}, 1, 0, 0)[:20],
		"trailing bytes":      append(h28Topic("x", TopicID{9}), 0),
		"frame version":       {2, 2, 0},
		"empty":               {},
		"huge array":          {1, MetaPartition, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xff, 0xff, 0x7f},
	} {
		if err := m.Apply(v); !errors.Is(err, ErrMetadataRecord) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if len(m.Partitions) != len(before.Partitions) || len(m.TopicNames) != len(before.TopicNames) {
		t.Fatal("a malformed record changed the image")
	}
	must(h28RemoveTopic(id))
	if _, ok := m.Partition("events", 1); ok || len(m.Partitions) != 0 {
		t.Fatal("partitions of a removed topic remain")
	}
}

// Encoders for test records (flexible versions, compact arrays).

func h28Uvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func h28I32(b []byte, v int32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func h28I64(b []byte, v int64) []byte { return h28I32(h28I32(b, int32(v>>32)), int32(v)) }

func h28Arr(b []byte, a []int32) []byte {
	if a == nil {
		return append(b, 0)
	}
	b = h28Uvarint(b, uint64(len(a)+1))
	for _, v := range a {
		b = h28I32(b, v)
	}
	return b
}

func h28Topic(name string, id TopicID) []byte {
	b := []byte{1, MetaTopic, 0}
	b = h28Uvarint(b, uint64(len(name)+1))
	b = append(b, name...)
	b = append(b, id[:]...)
	return append(b, 0)
}

func h28Partition(part int32, id TopicID, replicas, isr []int32, leader, epoch int32, ver byte) []byte {
	b := []byte{1, MetaPartition, ver}
	b = h28I32(b, part)
	b = append(b, id[:]...)
	b = h28Arr(b, replicas)
	b = h28Arr(b, isr)
	b = h28Arr(b, []int32{})
	b = h28Arr(b, []int32{})
	b = h28I32(b, leader)
	b = h28I32(b, epoch)
	b = h28I32(b, 7)
	if ver >= 1 {
		b = h28Uvarint(b, uint64(len(replicas)+1))
		for range replicas {
			b = append(b, make([]byte, 16)...)
		}
	}
	return append(b, 1, 0, 1, 0) // tag 0 LeaderRecoveryState = 0
}

func h28PartitionChange(part int32, id TopicID, leader int32, isr, replicas []int32) []byte {
	b := []byte{1, MetaPartitionChange, 0}
	b = h28I32(b, part)
	b = append(b, id[:]...)
	var tags [][]byte
	n := 0
	if isr != nil {
		tags = append(tags, append([]byte{0}, h28Sized(h28Arr(nil, isr))...))
		n++
	}
	if leader != leaderUnchanged {
		tags = append(tags, append([]byte{1}, h28Sized(h28I32(nil, leader))...))
		n++
	}
	if replicas != nil {
		tags = append(tags, append([]byte{2}, h28Sized(h28Arr(nil, replicas))...))
		n++
	}
	tags = append(tags, append([]byte{6}, h28Sized([]byte{0})...)) // an unknown tag (ELR, v2): skipped
	n++
	b = h28Uvarint(b, uint64(n))
	for _, t := range tags {
		b = append(b, t...)
	}
	return b
}

func h28Sized(p []byte) []byte { return append(h28Uvarint(nil, uint64(len(p))), p...) }

func h28Register(id int32, epoch int64, fenced bool) []byte {
	b := []byte{1, MetaRegisterBroker, 3}
	b = h28I32(b, id)
	b = append(b, 0)                   // IsMigratingZkBroker
	b = append(b, make([]byte, 16)...) // IncarnationId
	b = h28I64(b, epoch)
	b = append(b, 2, 6, 'P', 'L', 'A', 'I', 'N', 10, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0x23, 0x84, 0, 0, 0) // one endpoint
	b = append(b, 1)                                                                                                   // no features
	b = append(b, 0)                                                                                                   // null rack
	if fenced {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, 0)           // InControlledShutdown
	b = append(b, 1, 0, 17, 2) // tag 0: LogDirs, one uuid
	return append(b, make([]byte, 16)...)
}

func h28IDEpoch(key byte, id int32, epoch int64, tags []byte) []byte {
	b := h28I64(h28I32([]byte{1, key, 0}, id), epoch)
	if tags == nil {
		return append(b, 0)
	}
	return append(b, tags...)
}

func h28RemoveTopic(id TopicID) []byte {
	return append(append([]byte{1, MetaRemoveTopic, 0}, id[:]...), 0)
}
