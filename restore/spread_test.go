package restore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/restore"
)

// TestWholeBrokerTwoLogDirs rebuilds a broker into two empty log dirs: the
// partitions are spread over both, each dir gets meta.properties with the
// archived node and cluster id and its own directory id, and the renamed
// restore of one topic lands under its new name.
func TestWholeBrokerTwoLogDirs(t *testing.T) {
	ctx := context.Background()
	_, b, res := archiveWith(t, brokersim.Config{NodeID: 9, SegmentBytes: 16 << 10, Seed: 2,
		Topics: []brokersim.TopicSpec{{Name: "a", Partitions: 3, Records: 1500}, {Name: "b", Partitions: 3, Codec: "none", Records: 1500, ValueBytes: 150}}})
	s := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(ctx, s, archive.NewLayout(""), restore.Selection{Broker: 9, Metadata: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := filepath.Join(t.TempDir(), "data1"), filepath.Join(t.TempDir(), "data2")
	rep, err := restore.Run(ctx, s, plan, restore.Options{Targets: []string{d1, d2}, ToOffset: -1, ToTime: -1, NodeID: -1,
		Rename: map[string]string{"b": "b-restored"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partitions != 6 {
		t.Fatalf("%+v", rep)
	}
	count := func(d string) int {
		m, _ := filepath.Glob(filepath.Join(d, "*-[0-9]"))
		return len(m)
	}
	if n1, n2 := count(d1), count(d2); n1 == 0 || n2 == 0 || n1+n2 != 6 {
		t.Fatalf("partitions not spread over both dirs: %d + %d", n1, n2)
	}
	if m, _ := filepath.Glob(filepath.Join(d1, "b-restored-*")); len(m)+func() int { m2, _ := filepath.Glob(filepath.Join(d2, "b-restored-*")); return len(m2) }() != 3 {
		t.Fatal("renamed topic not restored under its new name")
	}
	ids := map[string]bool{}
	for _, d := range []string{d1, d2} {
		data, err := os.ReadFile(filepath.Join(d, index.MetaPropertiesFile))
		if err != nil {
			t.Fatal(err)
		}
		m, err := index.ParseMetaProperties(d, data)
		if err != nil {
			t.Fatal(err)
		}
		if m.NodeID != 9 || m.ClusterID != res.ClusterID || m.DirectoryID == "" {
			t.Fatalf("%s: %+v", d, m)
		}
		ids[m.DirectoryID] = true
	}
	if len(ids) != 2 {
		t.Fatal("both log dirs have the same directory.id")
	}
}
