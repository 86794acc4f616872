package main

import (
	"time"

	"github.com/segvault/segvault/restore"
)

// lsRestorable is the newest restorable point of a partition: the last
// offset a restore brings back (from the tail captures of the active
// segment when the archive holds any, else from the rolled segments) and
// the max timestamp of the batches up to it.
type lsRestorable struct {
	RestorableOffset *int64 `json:"restorable_offset,omitempty"`
	RestorableTime   string `json:"restorable_time,omitempty"`
	RestorableFrom   string `json:"restorable_from,omitempty"` // "tail-capture" or "rolled"
	CapturedAt       string `json:"captured_at,omitempty"`     // when the newest capture used was read
	TailSuperseded   int    `json:"tail_captures_superseded,omitempty"`
	TailUnusable     int    `json:"tail_captures_not_restorable,omitempty"`
}

// lsTail fills lp's newest restorable point from the plan, and counts the
// tail-capture chunks in the stored bytes.
func lsTail(lp *lsPartition, p *restore.PartitionPlan) {
	if p.LastOffset >= 0 {
		last := p.LastOffset
		lp.RestorableOffset = &last
	}
	ts := int64(-1)
	for _, s := range p.Segments {
		ts = max(ts, s.Manifest.Summary.MaxTimestamp)
		if !s.IsTail() {
			continue
		}
		for _, f := range s.Manifest.Files {
			for _, ch := range f.Chunks {
				lp.Stored += ch.StoredSize
			}
		}
	}
	if len(p.Segments) > 0 {
		lp.RestorableFrom = "rolled"
		if p.Segments[len(p.Segments)-1].IsTail() {
			lp.RestorableFrom = "tail-capture"
		}
	}
	if ts >= 0 && p.LastOffset >= 0 {
		lp.RestorableTime = time.UnixMilli(ts).UTC().Format(time.RFC3339Nano)
	}
	if t := p.Tail; t != nil {
		if !t.CapturedAt.IsZero() {
			lp.CapturedAt = t.CapturedAt.UTC().Format(time.RFC3339Nano)
		}
		lp.TailSuperseded, lp.TailUnusable = t.Superseded, t.Unusable
	}
}
