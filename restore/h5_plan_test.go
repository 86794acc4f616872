package restore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// TestH5LeaveOutBadManifest: with LeaveOutBad a manifest that does not
// decode is reported by key and left out; the partition plans without it
// and reports the gap; without it the plan fails as before. A broker the
// archive does not hold is a NoBrokerError listing the brokers it holds.
func TestH5LeaveOutBadManifest(t *testing.T) {
	root := buildArchive(t)
	p, m := firstManifest(t, root)
	key := strings.TrimPrefix(p, root+"/")
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	src := restore.NewSource(b, archive.DecodeOptions{})
	ctx := context.Background()
	if _, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("strict plan: %v, want an error naming %s", err, key)
	}
	plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1, LeaveOutBad: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Bad) != 1 || plan.Bad[0].Key != key {
		t.Fatalf("bad objects %+v, want %s", plan.Bad, key)
	}
	if len(plan.Partitions) != 2 {
		t.Fatalf("%d partitions planned, want 2", len(plan.Partitions))
	}
	for _, pp := range plan.Partitions {
		gapped := false
		for _, g := range pp.Gaps {
			gapped = gapped || g.From == m.BaseOffset && g.To == m.NextSegmentBase
		}
		if pp.Partition == m.Partition && !gapped {
			t.Errorf("%s-%d: the left-out segment %d..%d is not a gap: %+v", pp.Topic, pp.Partition, m.BaseOffset, m.NextSegmentBase, pp.Gaps)
		}
		var other []restore.Gap // the unarchived active segment (TailAt) is a gap of every partition
		for _, g := range pp.Gaps {
			if !g.Tail {
				other = append(other, g)
			}
		}
		if pp.Partition != m.Partition && len(other) > 0 {
			t.Errorf("%s-%d: unexpected gaps %+v", pp.Topic, pp.Partition, pp.Gaps)
		}
	}
	_, err = restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: 42, LeaveOutBad: true}, 2)
	var nb *restore.NoBrokerError
	if !errors.As(err, &nb) || len(nb.Brokers) != 1 || nb.Brokers[0] != 1 || !strings.Contains(err.Error(), "holds brokers 1") {
		t.Fatalf("broker 42: %v", err)
	}
}
