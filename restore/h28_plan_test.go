package restore

import (
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
)

func h28Seg(broker int32, base, next int64) Segment {
	return Segment{Key: "k", Manifest: &archive.SegmentManifest{BrokerID: broker, Kind: archive.KindSegment, TopicID: "id",
		BaseOffset: base, NextSegmentBase: next, CreatedAt: time.Unix(1e9+base, 0), Summary: &archive.SegmentSummary{BaseOffset: base, LastOffset: next - 1}}}
}

// With one archived copy per partition (issue 16) the selected broker's own
// chain can end before the archive does (it died, or lost leadership): the
// other replicas' later segments extend it, so the broker restores
// completely.
func TestH28PlanExtendsPastTheSelectedBrokersChain(t *testing.T) {
	segs := []Segment{h28Seg(1, 0, 100), h28Seg(1, 100, 200), h28Seg(2, 200, 290), h28Seg(2, 290, 400), h28Seg(3, 150, 250)}
	for _, broker := range []int32{1, 2, -1} {
		pp := planPartition("t", 0, segs, broker)
		if len(pp.Gaps) != 0 || pp.FirstOffset != 0 || pp.LastOffset != 399 {
			var got [][2]int64
			for _, s := range pp.Segments {
				got = append(got, [2]int64{s.Manifest.BaseOffset, s.Manifest.NextSegmentBase})
			}
			t.Errorf("broker %d: offsets %d..%d gaps %v chain %v", broker, pp.FirstOffset, pp.LastOffset, pp.Gaps, got)
		}
	}
}
