package index

import (
	"errors"
	"fmt"
	"slices"

	"github.com/segvault/segvault/segment"
)

// ProducerState replays batches the way Kafka's ProducerStateManager does
// during recovery (AppendOrigin.REPLICATION): per producer id it keeps the
// epoch, the last data batch (sequence, offset, offset delta), the last
// timestamp, the coordinator epoch of the last transaction marker and the
// first offset of the open transaction. It also yields the completed
// transactions that go into a segment's .txnindex.
//
// Feed it every batch of a partition in order, across segments, starting
// either empty (from the log start) or from a snapshot (FromSnapshot). The
// zero value is not usable; use NewProducerState.
type ProducerState struct {
	byID   map[int64]int // producer id -> index in list
	list   []producerEntry
	open   map[int64]int64 // producer id -> first offset of its open transaction (ongoingTxns)
	endOff int64           // map end offset: next offset after the last batch seen, -1 before any
}

type producerEntry struct {
	ProducerEntry
	hasBatch bool // batchMetadata is not empty
	inserted int  // insertion order, for HashMap iteration order
}

// NewProducerState returns an empty state, as at the start of a log.
func NewProducerState() *ProducerState {
	return &ProducerState{byID: map[int64]int{}, open: map[int64]int64{}, endOff: -1}
}

// ProducerStateFromSnapshot seeds the state from a decoded .snapshot file
// whose name (the map end offset) is endOffset, as
// ProducerStateManager.loadFromSnapshot does (without expiring producers: see
// Expire).
func ProducerStateFromSnapshot(entries []ProducerEntry, endOffset int64) *ProducerState {
	s := NewProducerState()
	for _, e := range entries {
		pe := s.entry(e.ProducerID)
		pe.ProducerEntry = e
		pe.hasBatch = e.LastOffset >= 0
		if e.CurrentTxnFirstOffset >= 0 {
			s.open[e.ProducerID] = e.CurrentTxnFirstOffset
		}
	}
	s.endOff = endOffset
	return s
}

// ProducerStateFromOpenTxns seeds a state that knows only the transactions
// open at a segment's start (producer id -> first offset), enough to rebuild
// that segment's .txnindex.
func ProducerStateFromOpenTxns(open map[int64]int64) *ProducerState {
	s := NewProducerState()
	for pid, first := range open {
		pe := s.entry(pid)
		pe.CurrentTxnFirstOffset = first
		s.open[pid] = first
	}
	return s
}

func (s *ProducerState) entry(pid int64) *producerEntry {
	if i, ok := s.byID[pid]; ok {
		return &s.list[i]
	}
	s.byID[pid] = len(s.list)
	s.list = append(s.list, producerEntry{
		ProducerEntry: ProducerEntry{ProducerID: pid, Epoch: -1, LastSequence: segment.NoSequence, LastOffset: -1,
			Timestamp: segment.NoTimestamp, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1},
		inserted: len(s.list),
	})
	return &s.list[len(s.list)-1]
}

// maybeUpdateEpoch is ProducerStateEntry.maybeUpdateProducerEpoch: a new
// epoch forgets the batch metadata.
func (e *producerEntry) maybeUpdateEpoch(epoch int16) {
	if e.Epoch != epoch {
		e.Epoch = epoch
		e.hasBatch = false
		e.LastSequence, e.LastOffset, e.OffsetDelta = segment.NoSequence, -1, 0
	}
}

// lastSequence is DefaultRecordBatch.lastSequence: baseSequence +
// lastOffsetDelta, wrapping past Integer.MAX_VALUE to 0.
func lastSequence(b *segment.Batch) int32 {
	if b.BaseSequence == segment.NoSequence {
		return segment.NoSequence
	}
	inc := b.LastOffsetDelta
	if b.BaseSequence > 1<<31-1-inc {
		return inc - (1<<31 - 1 - b.BaseSequence) - 1
	}
	return b.BaseSequence + inc
}

// Append replays one batch (segment.Reader's Batch and Raw). If the batch is
// a transaction marker that completes a non-empty aborted transaction it
// returns the .txnindex entry (ok=true). Batches without a producer id and
// legacy batches only advance the map end offset.
func (s *ProducerState) Append(b *segment.Batch, raw []byte) (txn AbortedTxn, ok bool, err error) {
	defer func() { s.endOff = b.NextOffset() }()
	if b.Magic < segment.MagicV2 || b.ProducerID < 0 {
		return txn, false, nil
	}
	e := s.entry(b.ProducerID)
	if !b.Control() {
		e.maybeUpdateEpoch(b.ProducerEpoch)
		e.hasBatch = true
		e.LastSequence = lastSequence(b)
		e.LastOffset = b.LastOffset()
		e.OffsetDelta = b.LastOffsetDelta
		e.Timestamp = b.MaxTimestamp
		if b.Transactional() && e.CurrentTxnFirstOffset < 0 {
			e.CurrentTxnFirstOffset = b.BaseOffset
			s.open[b.ProducerID] = b.BaseOffset
		}
		return txn, false, nil
	}
	c, found, err := ParseControlRecord(b, raw)
	if err != nil {
		return txn, false, err
	}
	if !found {
		// An empty control batch: the cleaner removed the marker. Kafka
		// still registers the producer (ProducerStateManager.update).
		return txn, false, nil
	}
	if c.Type != segment.ControlAbort && c.Type != segment.ControlCommit {
		return txn, false, fmt.Errorf("control batch at offset %d of producer %d: record type %d is not a transaction marker", b.BaseOffset, b.ProducerID, int16(c.Type))
	}
	first := e.CurrentTxnFirstOffset
	e.maybeUpdateEpoch(b.ProducerEpoch)
	e.CurrentTxnFirstOffset = -1
	e.CoordinatorEpoch = c.CoordinatorEpoch
	e.Timestamp = c.Timestamp
	if first < 0 {
		return txn, false, nil // an empty transaction leaves no trace in the index
	}
	delete(s.open, b.ProducerID)
	if c.Type == segment.ControlCommit {
		return txn, false, nil
	}
	// ProducerStateManager.lastStableOffset: the first offset of the
	// earliest transaction still open by another producer, else marker+1.
	lso := c.Offset + 1
	for pid, f := range s.open {
		if pid != b.ProducerID && f < lso {
			lso = f
		}
	}
	return AbortedTxn{ProducerID: b.ProducerID, FirstOffset: first, LastOffset: c.Offset, LastStableOffset: lso}, true, nil
}

// ControlRecord is the decoded key (and, for transaction markers, value) of
// a control batch's first record.
type ControlRecord struct {
	Type             segment.ControlType
	Offset           int64
	Timestamp        int64 // record timestamp (what ProducerStateManager stores for markers)
	CoordinatorEpoch int32 // transaction markers only, else -1
}

// ParseControlRecord decodes the first record of a v2 control batch
// (segment.Reader's Batch and Raw) with segment.DecodeRecords: key =
// version:int16 type:int16, and for ABORT/COMMIT value = version:int16
// coordinatorEpoch:int32. ok is false for a batch that is not a v2 control
// batch or has no records (the cleaner may leave empty control batches);
// err reports a malformed one.
func ParseControlRecord(b *segment.Batch, raw []byte) (c ControlRecord, ok bool, err error) {
	if !b.Control() || b.Magic != segment.MagicV2 || b.RecordCount == 0 {
		return c, false, nil
	}
	err = segment.DecodeRecords(b, raw, func(r *segment.Record) bool {
		t, kerr := segment.ParseControlKey(r.Key)
		if kerr != nil {
			err = kerr
			return false
		}
		c = ControlRecord{Type: t, Offset: r.Offset, Timestamp: r.Timestamp, CoordinatorEpoch: -1}
		if t == segment.ControlAbort || t == segment.ControlCommit {
			if c.CoordinatorEpoch, kerr = segment.ParseEndTxnMarker(r.Value); kerr != nil {
				err = kerr
				return false
			}
		}
		ok = true
		return false
	})
	if err != nil {
		var ce *segment.CorruptionError
		if errors.As(err, &ce) {
			return ControlRecord{}, false, fmt.Errorf("control batch at offset %d: %s check failed: %w", b.BaseOffset, ce.Check, ce.Err)
		}
		return ControlRecord{}, false, fmt.Errorf("control batch at offset %d: %w", b.BaseOffset, err)
	}
	return c, ok, nil
}

// EndOffset is the map end offset: the offset after the last batch seen, or
// the snapshot's offset, -1 if neither.
func (s *ProducerState) EndOffset() int64 { return s.endOff }

// OpenTxns returns the transactions still open: producer id -> first offset.
func (s *ProducerState) OpenTxns() map[int64]int64 {
	m := make(map[int64]int64, len(s.open))
	for k, v := range s.open {
		m[k] = v
	}
	return m
}

// Expire drops producers that ProducerStateManager.isProducerExpired would:
// no open transaction and last timestamp at least expirationMs before nowMs
// (producer.id.expiration.ms, default 86400000). Kafka applies it when it
// loads a snapshot and periodically, so a snapshot written by a long-running
// broker lacks producers idle for longer than that.
func (s *ProducerState) Expire(nowMs, expirationMs int64) {
	keep := s.list[:0]
	for _, e := range s.list {
		if e.CurrentTxnFirstOffset < 0 && nowMs-e.Timestamp >= expirationMs {
			delete(s.byID, e.ProducerID)
			continue
		}
		keep = append(keep, e)
	}
	s.list = keep
	for i, e := range s.list {
		s.byID[e.ProducerID] = i
	}
}

// Entries returns the snapshot entries in the order Kafka writes them.
//
// Kafka ignores the order when it reads a snapshot, but a byte-identical
// file needs it: ProducerStateManager keeps producers in a java.util.HashMap
// and writes them in its iteration order, i.e. by bucket
// (h ^ h>>>16) & (capacity-1) with h = Long.hashCode(id), then by insertion
// order within a bucket. The capacity is emulated as a HashMap that only
// grew (16, doubling past 0.75 load); producers removed from a long-lived map
// (expiration) leave it larger, which this cannot know.
func (s *ProducerState) Entries() []ProducerEntry {
	out := make([]ProducerEntry, 0, len(s.list))
	for _, e := range s.list {
		out = append(out, e.ProducerEntry)
	}
	SortProducersJavaHashMap(out)
	return out
}

// SortProducersJavaHashMap sorts entries (given in insertion order) into
// java.util.HashMap<Long,…> iteration order; see ProducerState.Entries.
func SortProducersJavaHashMap(entries []ProducerEntry) {
	capacity := 16
	for len(entries) > capacity*3/4 {
		capacity *= 2
	}
	bucket := func(id int64) int {
		h := int32(id ^ int64(uint64(id)>>32))
		h ^= int32(uint32(h) >> 16)
		return int(h) & (capacity - 1)
	}
	slices.SortStableFunc(entries, func(a, b ProducerEntry) int { return bucket(a.ProducerID) - bucket(b.ProducerID) })
}

// BuildProducerSnapshot replays the given segments (in order; each a
// (reader, size, name, base offset) tuple via SegmentSource) from an
// optional starting state and returns the .snapshot file Kafka would write
// at the end, named by the returned map end offset.
func BuildProducerSnapshot(start *ProducerState, segs ...SegmentSource) (snapshot []byte, endOffset int64, err error) {
	s := start
	if s == nil {
		s = NewProducerState()
	}
	for _, sg := range segs {
		r := segment.NewReader(sg.R, sg.Size, sg.Name, segment.ReaderOptions{BaseOffset: sg.BaseOffset})
		for r.Next() {
			if _, _, err := s.Append(r.Batch(), r.Raw()); err != nil {
				return nil, 0, fmt.Errorf("producer state from %s: %w", sg.Name, err)
			}
		}
		if err := r.Err(); err != nil {
			return nil, 0, fmt.Errorf("producer state from %s: %w", sg.Name, err)
		}
		if s.endOff < sg.BaseOffset {
			s.endOff = sg.BaseOffset // an empty segment still moves the map end offset (updateMapEndOffset on roll)
		}
	}
	return EncodeProducerSnapshot(s.Entries()), s.endOff, nil
}
