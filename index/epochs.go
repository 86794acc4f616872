package index

import (
	"fmt"
	"sort"

	"github.com/segvault/segvault/segment"
)

// EpochCache is Kafka's LeaderEpochFileCache in memory: leader epochs with
// the first offset written in each, epochs and offsets both increasing. The
// zero value is an empty cache.
type EpochCache struct {
	entries []EpochEntry
}

// NewEpochCache returns a cache loaded with entries (as read from a
// leader-epoch-checkpoint) the way LeaderEpochFileCache loads its file: by
// assigning each in order, so entries that break monotonicity are dropped
// as Kafka drops them.
func NewEpochCache(entries []EpochEntry) *EpochCache {
	c := &EpochCache{entries: make([]EpochEntry, 0, len(entries))}
	for _, e := range entries {
		c.Assign(e.Epoch, e.StartOffset)
	}
	return c
}

// Entries returns a copy of the cache, ready for FormatLeaderEpochCheckpoint.
func (c *EpochCache) Entries() []EpochEntry { return append([]EpochEntry{}, c.entries...) }

// Latest is the last entry.
func (c *EpochCache) Latest() (EpochEntry, bool) {
	if len(c.entries) == 0 {
		return EpochEntry{}, false
	}
	return c.entries[len(c.entries)-1], true
}

// Assign is LeaderEpochFileCache.assign(epoch, startOffset). Nothing
// changes when the latest entry has the same epoch and a start offset at or
// below startOffset. Otherwise every trailing entry with an epoch >= epoch or
// a start offset >= startOffset is removed (maybeTruncateNonMonotonicEntries)
// and (epoch, startOffset) appended. Negative arguments are ignored (Kafka
// throws).
func (c *EpochCache) Assign(epoch int32, startOffset int64) {
	if epoch < 0 || startOffset < 0 {
		return
	}
	if l, ok := c.Latest(); ok && l.Epoch == epoch && startOffset >= l.StartOffset {
		return
	}
	n := len(c.entries)
	for n > 0 && (c.entries[n-1].Epoch >= epoch || c.entries[n-1].StartOffset >= startOffset) {
		n--
	}
	c.entries = append(c.entries[:n], EpochEntry{Epoch: epoch, StartOffset: startOffset})
}

// AssignBatch applies what LogSegment.recover does for one batch: assign
// the batch's partition leader epoch at its base offset when it is above
// the latest epoch. Batches before magic 2 carry no epoch.
func (c *EpochCache) AssignBatch(b *segment.Batch) {
	if b.Magic < segment.MagicV2 || b.PartitionLeaderEpoch < 0 {
		return
	}
	if l, ok := c.Latest(); ok && b.PartitionLeaderEpoch <= l.Epoch {
		return
	}
	c.Assign(b.PartitionLeaderEpoch, b.BaseOffset)
}

// TruncateFromEnd is LeaderEpochFileCache.truncateFromEnd(endOffset): it
// removes entries whose start offset is >= endOffset (the log end after a
// truncation).
func (c *EpochCache) TruncateFromEnd(endOffset int64) {
	if endOffset < 0 {
		return
	}
	n := len(c.entries)
	for n > 0 && c.entries[n-1].StartOffset >= endOffset {
		n--
	}
	c.entries = c.entries[:n]
}

// TruncateFromStart is LeaderEpochFileCache.truncateFromStart(startOffset):
// entries starting at or before startOffset are removed and the last of them
// is put back starting at startOffset (the epoch in force at the new log
// start).
func (c *EpochCache) TruncateFromStart(startOffset int64) {
	i := 0
	for i < len(c.entries) && c.entries[i].StartOffset <= startOffset {
		i++
	}
	if i == 0 {
		return
	}
	kept := EpochEntry{Epoch: c.entries[i-1].Epoch, StartOffset: startOffset}
	c.entries = append([]EpochEntry{kept}, c.entries[i:]...)
}

// ClipLeaderEpochs fits a parsed leader-epoch-checkpoint to a restored log
// holding offsets [logStart, logEnd), the way LogLoader does at startup:
// truncateFromEnd(logEnd), which keeps entries with startOffset < logEnd,
// then truncateFromStart(logStart).
func ClipLeaderEpochs(entries []EpochEntry, logStart, logEnd int64) []EpochEntry {
	c := NewEpochCache(entries)
	c.TruncateFromEnd(logEnd)
	c.TruncateFromStart(logStart)
	return c.Entries()
}

// MergeLeaderEpochs combines leader-epoch entries from several sources (a
// captured leader-epoch-checkpoint and the LeaderEpochs of segment
// summaries, in any order) for a log ending before end: entries are sorted
// by epoch, then start offset (stable); each epoch keeps its first start
// offset; an entry starting below the one kept before it is dropped, so
// epochs and start offsets both rise; entries starting at or beyond end are
// dropped, as Kafka's truncateFromEnd does. in is sorted in place.
func MergeLeaderEpochs(in []EpochEntry, end int64) []EpochEntry {
	sort.SliceStable(in, func(i, j int) bool {
		return in[i].Epoch < in[j].Epoch || in[i].Epoch == in[j].Epoch && in[i].StartOffset < in[j].StartOffset
	})
	var out []EpochEntry
	for _, e := range in {
		if e.StartOffset >= end {
			continue
		}
		if n := len(out); n > 0 && (out[n-1].Epoch == e.Epoch || out[n-1].StartOffset > e.StartOffset) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// DeriveLeaderEpochs rebuilds leader-epoch entries from segments, in
// offset order, by the recovery rule (EpochCache.AssignBatch). A cache with
// the checkpoint of the segments before the first one may be passed to
// continue it; nil starts empty.
func DeriveLeaderEpochs(start *EpochCache, segs ...SegmentSource) ([]EpochEntry, error) {
	c := start
	if c == nil {
		c = &EpochCache{}
	}
	for _, sg := range segs {
		r := segment.NewReader(sg.R, sg.Size, sg.Name, segment.ReaderOptions{BaseOffset: sg.BaseOffset})
		for r.Next() {
			c.AssignBatch(r.Batch())
		}
		if err := r.Err(); err != nil {
			return c.Entries(), fmt.Errorf("leader epochs from %s: %w", sg.Name, err)
		}
	}
	return c.Entries(), nil
}

// EpochsFromSummaries derives the same entries from the LeaderEpochs of
// segment Summaries (archive manifests), in offset order, without reading
// the logs: each Summary lists the epoch increases within its segment.
func EpochsFromSummaries(sums ...*segment.Summary) []EpochEntry {
	c := &EpochCache{}
	for _, s := range sums {
		for _, e := range s.LeaderEpochs {
			if l, ok := c.Latest(); ok && e.Epoch <= l.Epoch {
				continue
			}
			c.Assign(e.Epoch, e.StartOffset)
		}
	}
	return c.Entries()
}
