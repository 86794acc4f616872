package index

import (
	"errors"
	"fmt"
	"io"

	"github.com/segvault/segvault/segment"
)

// SegmentSource is one segment's .log to read: size bytes from R, named
// Name in errors, with the base offset from its file name.
type SegmentSource struct {
	R          io.Reader
	Size       int64
	Name       string
	BaseOffset int64
}

// RebuildOptions configure Rebuild. The zero value rebuilds a segment with
// base offset 0 and Kafka's defaults.
type RebuildOptions struct {
	// BaseOffset is the segment's base offset (from its file name).
	BaseOffset int64
	// IndexIntervalBytes is the topic's index.interval.bytes; 0 or less
	// means Kafka's default, 4096.
	IndexIntervalBytes int
	// OpenTxns are the transactions open at the segment's start:
	// producer id -> first offset (possibly in an earlier segment). Take
	// them from the previous segment's RebuildResult.OpenTxns, or from a
	// producer snapshot (OpenTxnsFromSnapshot). Nil means none, which is
	// right for the first segment of a log.
	OpenTxns map[int64]int64
	// Producers, if set, is used (and advanced) instead of OpenTxns: a
	// caller replaying a whole partition passes one ProducerState through
	// every segment to get producer snapshots as well.
	Producers *ProducerState
	// LeaderEpochs, if set, receives Kafka's recovery-time
	// LeaderEpochFileCache.assign calls for this segment's batches.
	LeaderEpochs *EpochCache
}

// RebuildResult is what Kafka's LogSegment.recover produces for a segment.
type RebuildResult struct {
	OffsetIndex []byte // trimmed .index
	TimeIndex   []byte // trimmed .timeindex, including the final entry
	TxnIndex    []byte // .txnindex; nil when the segment aborted no transaction (Kafka creates no file)
	Aborted     []AbortedTxn
	ValidBytes  int64           // bytes of whole valid batches: the length recovery would truncate the .log to
	Batches     int             // batches read
	NextOffset  int64           // offset after the last batch, BaseOffset if none
	MaxTime     TimeEntry       // segment max timestamp and its batch's last offset; Timestamp -1 if none
	OpenTxns    map[int64]int64 // transactions open at the end: OpenTxns for the next segment
}

// indexBuilder applies Kafka's recovery rules (kafka-format.md §4.3) batch
// by batch; Rebuild and VerifySegment share it.
type indexBuilder struct {
	base       int64
	interval   int64
	lastIndex  int64 // position of the last offset-index entry, 0 at start
	maxTs      int64
	maxTsOff   int64
	lastTimeTs int64 // timestamp of the last time-index entry, -1 when none
	offIdx     []byte
	timeIdx    []byte
	nOff       int
	nTime      int
}

func newIndexBuilder(base int64, interval int) *indexBuilder {
	if interval <= 0 {
		interval = DefaultIndexIntervalBytes
	}
	return &indexBuilder{base: base, interval: int64(interval), maxTs: segment.NoTimestamp, maxTsOff: base, lastTimeTs: segment.NoTimestamp}
}

// add is one iteration of LogSegment.recover's loop.
func (ib *indexBuilder) add(b *segment.Batch) {
	if b.MaxTimestamp > ib.maxTs {
		ib.maxTs, ib.maxTsOff = b.MaxTimestamp, b.LastOffset()
	}
	if b.Pos-ib.lastIndex > ib.interval {
		ib.offIdx = appendOffsetEntry(ib.offIdx, OffsetEntry{Offset: b.LastOffset(), Position: int32(b.Pos)}, ib.base)
		ib.nOff++
		ib.maybeAppendTime()
		ib.lastIndex = b.Pos
	}
}

// maybeAppendTime is TimeIndex.maybeAppend: only a strictly larger
// timestamp makes an entry.
func (ib *indexBuilder) maybeAppendTime() {
	if ib.maxTs > ib.lastTimeTs {
		ib.timeIdx = appendTimeEntry(ib.timeIdx, TimeEntry{Timestamp: ib.maxTs, Offset: ib.maxTsOff}, ib.base)
		ib.nTime++
		ib.lastTimeTs = ib.maxTs
	}
}

// finish appends the final time-index entry (LogSegment.recover's last
// maybeAppend, also done at roll and close).
func (ib *indexBuilder) finish() { ib.maybeAppendTime() }

// Rebuild recomputes a segment's .index, .timeindex and .txnindex from its
// .log exactly as Kafka >= 2.0 recovery does (LogSegment.recover): the
// output is byte-identical to what a broker writes when it recovers the
// segment, and to the broker's own files for leader-written segments of
// one batch per append (kafka-format.md §4.1-4.3).
//
// src holds size bytes of the .log (pass the length from CutLength to
// rebuild a segment truncated for a point-in-time restore). On a corrupt or
// torn batch Rebuild returns the result for the valid prefix (ValidBytes)
// together with the reader's *segment.CorruptionError, like recovery, which
// would truncate the log there.
func Rebuild(src io.Reader, size int64, name string, opts RebuildOptions) (*RebuildResult, error) {
	ib := newIndexBuilder(opts.BaseOffset, opts.IndexIntervalBytes)
	ps := opts.Producers
	if ps == nil {
		ps = ProducerStateFromOpenTxns(opts.OpenTxns)
	}
	res := &RebuildResult{NextOffset: opts.BaseOffset}
	r := segment.NewReader(src, size, name, segment.ReaderOptions{BaseOffset: opts.BaseOffset})
	var txn []byte
	for r.Next() {
		b := r.Batch()
		res.NextOffset = b.NextOffset()
		ib.add(b)
		if opts.LeaderEpochs != nil && b.Magic >= segment.MagicV2 && b.PartitionLeaderEpoch >= 0 {
			if l, ok := opts.LeaderEpochs.Latest(); !ok || b.PartitionLeaderEpoch > l.Epoch {
				opts.LeaderEpochs.Assign(b.PartitionLeaderEpoch, b.BaseOffset)
			}
		}
		t, ok, err := ps.Append(b, r.Raw())
		if err != nil {
			res.finish(ib, ps, txn, r)
			return res, &segment.CorruptionError{File: name, Pos: b.Pos, BaseOffset: b.BaseOffset, Check: "control record", Err: err}
		}
		if ok {
			txn = appendTxnEntry(txn, t)
			res.Aborted = append(res.Aborted, t)
		}
	}
	res.finish(ib, ps, txn, r)
	if err := r.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func (res *RebuildResult) finish(ib *indexBuilder, ps *ProducerState, txn []byte, r *segment.Reader) {
	ib.finish()
	res.OffsetIndex = ib.offIdx
	res.TimeIndex = ib.timeIdx
	res.TxnIndex = txn
	res.ValidBytes = r.Pos()
	res.Batches = r.Count()
	res.MaxTime = TimeEntry{Timestamp: ib.maxTs, Offset: ib.maxTsOff}
	res.OpenTxns = ps.OpenTxns()
	if res.OffsetIndex == nil {
		res.OffsetIndex = []byte{}
	}
	if res.TimeIndex == nil {
		res.TimeIndex = []byte{}
	}
}

// ErrCutBeforeSegment is returned by CutLength when the cut offset lies
// below the segment's first batch: nothing of the segment is kept.
var ErrCutBeforeSegment = errors.New("cut offset below the segment's first batch")

// CutLength finds where to truncate a .log for a point-in-time restore that
// keeps offsets up to and including cut: the byte length of the prefix of
// whole batches whose last offset is <= cut. A batch straddling cut (a
// compressed or multi-record batch with baseOffset <= cut < lastOffset) is
// dropped whole, because Kafka cannot split a batch; lastKept reports the
// real last offset kept (-1 if none). The prefix is then rebuilt with
// Rebuild(src, length, ...). A length of 0 comes with ErrCutBeforeSegment.
//
// A cut inside a transaction leaves it open for good (its marker is gone):
// when the prefix's RebuildResult.OpenTxns is not empty, the restored
// partition's last stable offset stays at the earliest open transaction's
// first offset, and read_committed consumers stop there, until a
// coordinator that knows the transaction aborts it. A restore that wants a
// clean end cuts below the smallest first offset in OpenTxns instead.
func CutLength(src io.Reader, size int64, name string, baseOffset, cut int64) (length, lastKept int64, err error) {
	p, err := CutPrefix(src, size, name, baseOffset, PointInTime{ToOffset: cut, ToTime: -1})
	if err != nil {
		return p.Length, p.LastOffset, fmt.Errorf("cut %s at offset %d: %w", name, cut, err)
	}
	if p.Length == 0 {
		return 0, -1, ErrCutBeforeSegment
	}
	return p.Length, p.LastOffset, nil
}

// PointInTime bounds a point-in-time restore: the log keeps the prefix of
// batches with lastOffset <= ToOffset and maxTimestamp <= ToTime (-1: no
// bound); the first batch over either bound ends it.
type PointInTime struct {
	ToOffset int64
	ToTime   int64
}

// Keeps reports whether b lies within the bound.
func (p PointInTime) Keeps(b *segment.Batch) bool {
	return (p.ToOffset < 0 || b.LastOffset() <= p.ToOffset) && (p.ToTime < 0 || b.MaxTimestamp <= p.ToTime)
}

// KeepsWhole reports whether a whole segment, by its Summary, lies within
// the bound, so it is kept without reading it.
func (p PointInTime) KeepsWhole(s *segment.Summary) bool {
	return (p.ToOffset < 0 || s.LastOffset <= p.ToOffset) && (p.ToTime < 0 || s.MaxTimestamp <= p.ToTime)
}

// Prefix is the part of a segment a PointInTime keeps.
type Prefix struct {
	Length       int64 // bytes of whole batches kept (0: none)
	LastOffset   int64 // last offset kept, -1 if none
	MaxTimestamp int64 // largest batch max timestamp kept, -1 if none
	Batches      int
}

// CutPrefix reads a .log (size bytes from src) up to the first batch
// outside p and returns the prefix p keeps. The error is the reader's
// (*segment.CorruptionError or I/O) for a damaged batch met before the
// cut; the Prefix then covers the batches before it.
func CutPrefix(src io.Reader, size int64, name string, baseOffset int64, p PointInTime) (Prefix, error) {
	r := segment.NewReader(src, size, name, segment.ReaderOptions{BaseOffset: baseOffset})
	res := Prefix{LastOffset: -1, MaxTimestamp: -1}
	for r.Next() {
		b := r.Batch()
		if !p.Keeps(b) {
			return res, nil
		}
		res.Length, res.LastOffset = b.Pos+b.Size(), b.LastOffset()
		res.MaxTimestamp = max(res.MaxTimestamp, b.MaxTimestamp)
		res.Batches++
	}
	return res, r.Err()
}

// OpenTxnsFromSnapshot returns the transactions a producer snapshot
// records as open (currentTxnFirstOffset >= 0): the OpenTxns for the
// segment that starts at the snapshot's offset.
func OpenTxnsFromSnapshot(entries []ProducerEntry) map[int64]int64 {
	m := map[int64]int64{}
	for _, e := range entries {
		if e.CurrentTxnFirstOffset >= 0 {
			m[e.ProducerID] = e.CurrentTxnFirstOffset
		}
	}
	return m
}
