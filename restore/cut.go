package restore

import (
	"context"
	"fmt"

	"github.com/segvault/segvault/index"
)

// CutPreview is where a point-in-time restore will cut a partition, before
// open transactions are handled (--open-txns).
type CutPreview struct {
	Kept          bool  // false: nothing of the partition is kept
	LastOffset    int64 // last offset kept
	LastTimestamp int64 // max timestamp of the kept batches (ms), -1 if none
	Segments      int   // segments kept (the last one possibly truncated)
}

// PreviewCut computes the exact cut of pp at toOffset/toTime (-1: no bound)
// as Run makes it: whole segments from their summaries, and the segment
// holding the cut read batch by batch from the archive (verified).
func PreviewCut(ctx context.Context, src Source, pp *PartitionPlan, toOffset, toTime int64) (CutPreview, error) {
	c := CutPreview{LastOffset: -1, LastTimestamp: -1}
	pit := index.PointInTime{ToOffset: toOffset, ToTime: toTime}
	for _, s := range pp.Segments {
		sum := s.Manifest.Summary
		if pit.KeepsWhole(sum.Segment()) {
			c.Segments++
			if sum.LastOffset >= 0 {
				c.Kept, c.LastOffset = true, sum.LastOffset
			}
			c.LastTimestamp = max(c.LastTimestamp, sum.MaxTimestamp)
			continue
		}
		rec, ok := s.Manifest.LogFile()
		if !ok {
			return c, fmt.Errorf("manifest %s names no .log file", s.Key)
		}
		rc, err := src.Open(ctx, rec)
		if err != nil {
			return c, fmt.Errorf("object %s (%s): %w", objectKey(rec), rec.Name, err)
		}
		defer rc.Close()
		p, err := index.CutPrefix(rc, rec.Size, objectKey(rec), s.Manifest.BaseOffset, pit)
		if p.Batches > 0 {
			c.Kept, c.LastOffset = true, p.LastOffset
			c.LastTimestamp = max(c.LastTimestamp, p.MaxTimestamp)
		}
		if err != nil {
			return c, err
		}
		c.Segments++ // kept, possibly truncated to nothing, as Run does
		return c, nil
	}
	return c, nil
}
