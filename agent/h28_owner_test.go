package agent

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/segvault/segvault/index"
)

func TestH28Designate(t *testing.T) {
	liveSet := func(ids ...int32) func(int32) bool {
		return func(id int32) bool { return slices.Contains(ids, id) }
	}
	for _, tc := range []struct {
		name     string
		replicas []int32
		leader   int32
		live     func(int32) bool
		want     int32
		ok       bool
	}{
		{"leader known", []int32{2, 3, 1}, 3, liveSet(1, 2, 3), 3, true},
		{"leader known, liveness unknown", []int32{2, 3, 1}, 1, nil, 1, true},
		{"no leader: first live replica in list order", []int32{2, 3, 1}, -1, liveSet(1, 3), 3, true},
		{"no leader: preferred replica live", []int32{2, 3, 1}, -1, liveSet(1, 2, 3), 2, true},
		{"no leader, none live", []int32{2, 3, 1}, -1, liveSet(), -1, false},
		{"no leader, no liveness", []int32{2, 3, 1}, -1, nil, -1, false},
		{"no replicas", nil, -1, liveSet(1), -1, false},
	} {
		got, ok := Designate(tc.replicas, tc.leader, tc.live)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %d %v, want %d %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func h28Image() *index.ClusterMetadata {
	m := index.NewClusterMetadata()
	id := index.TopicID{7}
	m.TopicNames[id] = "events"
	m.TopicIDs["events"] = id
	add := func(p int32, replicas []int32, leader int32) {
		m.Partitions[index.PartitionKey{TopicID: id, Partition: p}] = &index.PartitionAssignment{
			Topic: "events", TopicID: id, Partition: p, Replicas: replicas, ISR: replicas, Leader: leader}
	}
	add(0, []int32{1, 2, 3}, 2)
	add(1, []int32{2, 3, 1}, -1) // leaderless: broker 2 fenced, 3 is the first live
	add(2, []int32{3, 1, 2}, -1) // leaderless, no live replica
	add(3, []int32{2, 3}, 3)     // broker 1 holds no replica (stray copy)
	m.Brokers[1] = &index.BrokerState{ID: 1}
	m.Brokers[2] = &index.BrokerState{ID: 2, Fenced: true}
	m.Brokers[3] = &index.BrokerState{ID: 3}
	return m
}

// Every broker computes the same designated archiver from the same image,
// and exactly one of them archives each decided partition.
func TestH28MetadataRoleAgreement(t *testing.T) {
	m := h28Image()
	m.Brokers[3].Fenced = false
	for p, want := range map[int32]int32{0: 2, 1: 3} {
		archivers := 0
		for _, self := range []int32{1, 2, 3} {
			role, who := MetadataRole(m, self, "events", p)
			if who != want {
				t.Errorf("p%d broker %d: designated %d, want %d", p, self, who, want)
			}
			if role == RoleArchive {
				archivers++
			} else if role != RoleStandby {
				t.Errorf("p%d broker %d: role %v", p, self, role)
			}
		}
		if archivers != 1 {
			t.Errorf("p%d: %d archivers", p, archivers)
		}
	}
	m.Brokers[1].Fenced = true
	m.Brokers[3].Fenced = true
	if role, _ := MetadataRole(m, 1, "events", 2); role != RoleUndecided {
		t.Errorf("no live replica: %v", role)
	}
	if role, who := MetadataRole(m, 1, "events", 3); role != RoleArchive || who != 1 {
		t.Errorf("stray replica: %v %d", role, who)
	}
	if role, _ := MetadataRole(m, 1, "other", 0); role != RoleUndecided {
		t.Errorf("unknown topic: %v", role)
	}
	if role, _ := MetadataRole(nil, 1, "events", 0); role != RoleUndecided {
		t.Errorf("no metadata: %v", role)
	}
}

// On a real single-broker KRaft cluster's metadata, node 1 archives all of
// its partitions.
func TestH28MetadataRoleFixture(t *testing.T) {
	dir := filepath.Join("../../shared/fixtures/kafka-real/ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data", index.MetadataDirName)
	m, _, err := index.LoadClusterMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range m.Partitions {
		if role, who := MetadataRole(m, 1, p.Topic, p.Partition); role != RoleArchive || who != 1 {
			t.Fatalf("%s-%d: %v %d", p.Topic, p.Partition, role, who)
		}
		if role, _ := MetadataRole(m, 2, p.Topic, p.Partition); role != RoleArchive {
			// broker 2 holds no replica in the metadata: its copy is stray.
			t.Fatalf("%s-%d broker 2: %v", p.Topic, p.Partition, role)
		}
		n++
	}
	if n != 139 {
		t.Fatalf("%d partitions", n)
	}
}

func TestH28Takeover(t *testing.T) {
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	grace := TakeoverGrace(5*time.Second, 30*time.Second)
	if grace != 75*time.Second {
		t.Fatalf("grace %v", grace)
	}
	old := now.Add(-2 * grace)
	young := now.Add(-grace / 2)
	// This replica's boundaries differ from the archived (leader's) ones.
	local := []LocalSegment{
		{Base: 0, End: 150, LastAppend: old},
		{Base: 150, End: 320, LastAppend: old},
		{Base: 320, End: 400, LastAppend: old},
		{Base: 400, End: 480, LastAppend: young},
	}
	for _, tc := range []struct {
		name     string
		archived []OffsetRange
		progress time.Time
		want     []int64
	}{
		{"fully covered by other boundaries", []OffsetRange{{200, 400}, {0, 100}, {100, 200}, {400, 500}}, old, nil},
		{"archive behind: take over the old missing ones, not the young one",
			[]OffsetRange{{0, 100}, {100, 200}}, old, []int64{150, 320}},
		{"hole in the middle", []OffsetRange{{0, 100}, {100, 200}, {300, 480}}, old, []int64{150}},
		{"empty archive", nil, old, []int64{0, 150, 320}},
		{"archive still growing: wait", []OffsetRange{{0, 100}}, young, nil},
		{"adjacent ranges merge", []OffsetRange{{0, 150}, {150, 320}, {320, 400}}, old, nil},
	} {
		got := Takeover(TakeoverInput{Local: local, Archived: tc.archived, Progress: tc.progress, Now: now, Grace: grace})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
