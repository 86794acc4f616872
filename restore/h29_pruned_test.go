package restore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// h29VanishSource answers Get for keys it was told to forget with
// ErrNotFound, as a store does for a manifest a concurrent prune deleted
// after the listing.
type h29VanishSource struct {
	restore.Source
	gone string
}

func (s *h29VanishSource) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if key == s.gone {
		return nil, fmt.Errorf("get %s: %w", key, uploader.ErrNotFound)
	}
	return s.Source.Get(ctx, key, max)
}

// TestH29PlanToleratesPrunedManifest: a manifest listed but deleted before
// it is read (segvault prune running alongside) is left out of the plan,
// not a failure: prune only deletes versions restore does not pick.
func TestH29PlanToleratesPrunedManifest(t *testing.T) {
	root := buildArchive(t)
	p, _ := firstManifest(t, root)
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	src := &h29VanishSource{Source: restore.NewSource(b, archive.DecodeOptions{}), gone: strings.TrimPrefix(p, root+"/")}
	plan, err := restore.MakePlan(context.Background(), src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatalf("plan with a manifest pruned after the listing: %v", err)
	}
	if len(plan.Partitions) != 2 || len(plan.Bad) != 0 {
		t.Fatalf("%d partitions, bad %+v", len(plan.Partitions), plan.Bad)
	}
}
