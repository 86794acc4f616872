package index

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/segvault/segvault/segment"
)

// Rule names the writer behaviour an index entry matches (kafka-format.md
// §4.1-4.2).
type Rule string

// Offset-index rules.
const (
	// RuleLastOffset: the entry is (lastOffset, position) of the batch at
	// the position (Kafka >= 2.0, leader appends and recovery).
	RuleLastOffset Rule = "last-offset"
	// RuleFirstOffset: the entry is the batch's base offset (Kafka <= 1.1).
	RuleFirstOffset Rule = "first-offset"
	// RuleMultiBatch: the position is the first batch of a multi-batch
	// append (follower fetch, log cleaner) and the offset is the last offset
	// of a later batch of that append.
	RuleMultiBatch Rule = "multi-batch"
	// RuleUnexplained: the entry is safe for lookups but matches no known
	// writer rule.
	RuleUnexplained Rule = "unexplained"
)

// Time-index rules.
const (
	// RuleBatchMax: (maxTimestamp, lastOffset) of a batch (recovery,
	// followers, compressed and >= 3.8 leader appends).
	RuleBatchMax Rule = "batch"
	// RuleRecordMax: the offset of the first record having the batch's max
	// timestamp (uncompressed leader appends up to 3.6).
	RuleRecordMax Rule = "record"
	// RuleBatchFirst: the batch's base offset (magic 1 LogAppendTime).
	RuleBatchFirst Rule = "batch-first"
	// RuleUnverified: the timestamp is the batch's max but the offset lies
	// inside a batch whose records index cannot read (compressed, no
	// VerifyOptions.RecordMax): valid, not reproducible here.
	RuleUnverified Rule = "unverified"
)

// Txn-index rule.
const (
	// RuleAbortMarker: the entry's last offset is an ABORT marker of its producer.
	RuleAbortMarker Rule = "abort-marker"
)

// MaxProblemsPerFile bounds the problems kept per file; the rest are counted.
const MaxProblemsPerFile = 1000

// Problem is one finding about an index entry. Corrupt problems are states
// a broker never writes and that can mislead it; the others are notes (why
// a file is not reproducible, DumpLogSegments' stricter checks, restore
// hazards).
type Problem struct {
	Pos     int64  `json:"pos"`   // byte offset of the entry in the index file
	Entry   int    `json:"entry"` // entry number, -1 for the whole file
	Check   string `json:"check"`
	Corrupt bool   `json:"corrupt"`
	Detail  string `json:"detail"`
}

// FileReport is the verification of one side file.
type FileReport struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
	Bytes   int64  `json:"bytes"`
	Layout  `json:"layout"`
	// Rules counts entries per matched rule.
	Rules map[Rule]int `json:"rules,omitempty"`
	// Reproducible: the file is byte-identical to Rebuild's output (what
	// Kafka recovery writes). False for follower/cleaner files, segments
	// that lived across restarts, the <= 3.6 record-level time rule and
	// zero-padded files: valid, just not reproducible.
	Reproducible bool      `json:"reproducible"`
	Problems     []Problem `json:"problems,omitempty"`
	MoreProblems int       `json:"more_problems,omitempty"` // problems past MaxProblemsPerFile
	Corrupt      bool      `json:"corrupt"`
	firstErr     *IndexError
}

func (f *FileReport) add(p Problem) {
	if p.Corrupt {
		f.Corrupt = true
		if f.firstErr == nil {
			f.firstErr = &IndexError{File: f.Name, Pos: p.Pos, Entry: p.Entry, Check: p.Check, Err: errors.New(p.Detail)}
		}
	}
	if len(f.Problems) >= MaxProblemsPerFile {
		f.MoreProblems++
		return
	}
	f.Problems = append(f.Problems, p)
}

func (f *FileReport) addf(pos int64, entry int, check string, corrupt bool, format string, args ...any) {
	f.add(Problem{Pos: pos, Entry: entry, Check: check, Corrupt: corrupt, Detail: fmt.Sprintf(format, args...)})
}

func (f *FileReport) rule(r Rule) {
	if f.Rules == nil {
		f.Rules = map[Rule]int{}
	}
	f.Rules[r]++
}

// fromErr records a structural *IndexError from a parser.
func (f *FileReport) fromErr(err error) {
	var ie *IndexError
	if errors.As(err, &ie) {
		f.Corrupt = true
		if f.firstErr == nil {
			f.firstErr = ie
		}
		f.Problems = append(f.Problems, Problem{Pos: ie.Pos, Entry: ie.Entry, Check: ie.Check, Corrupt: true, Detail: ie.Err.Error()})
	}
}

// SegmentReport is the verification of a segment's side files against its .log.
type SegmentReport struct {
	Log        string         `json:"log"`
	LogBytes   int64          `json:"log_bytes"`
	ValidBytes int64          `json:"valid_bytes"` // bytes of whole valid batches
	Batches    int            `json:"batches"`
	Index      FileReport     `json:"index"`
	TimeIndex  FileReport     `json:"time_index"`
	TxnIndex   FileReport     `json:"txn_index"`
	Rebuilt    *RebuildResult `json:"-"` // what Rebuild produces for the same log
}

// Corrupt reports whether any side file is corrupt.
func (r *SegmentReport) Corrupt() bool {
	return r.Index.Corrupt || r.TimeIndex.Corrupt || r.TxnIndex.Corrupt
}

// SideFiles holds a segment's index files' bytes; nil means the file is
// absent (an empty slice is a present, 0-byte file).
type SideFiles struct {
	Index     []byte
	TimeIndex []byte
	TxnIndex  []byte
}

// VerifyOptions configure VerifySegment.
type VerifyOptions struct {
	// BaseOffset is the segment's base offset (from its file name).
	BaseOffset int64
	// IndexIntervalBytes for the reproducibility comparison (default 4096).
	IndexIntervalBytes int
	// OpenTxns at the segment start, for the .txnindex comparison (see
	// RebuildOptions.OpenTxns).
	OpenTxns map[int64]int64
	// RecordMax reads record-level max timestamps of batches index cannot
	// read itself (compressed, legacy); optional.
	RecordMax RecordMaxFunc
}

// sideName derives "0000….index" from "0000….log".
func sideName(logName, ext string) string {
	return strings.TrimSuffix(logName, ".log") + ext
}

// VerifySegment checks a segment's .index, .timeindex and .txnindex
// against its .log in one streaming pass over the log (src, size bytes).
//
// Offset index: structure (ParseOffsetIndex), every position is the start
// of a batch inside the log, the batch before it ends below the entry's
// offset (else lookups would skip data), and the offset is explained by a
// writer rule: last offset of that batch (>= 2.0), its base offset (<= 1.1)
// or the last offset of a later batch of the same multi-batch append
// (follower/cleaner; DumpLogSegments reports these as mismatches although
// the broker wrote them).
//
// Time index: structure (ParseTimeIndex; timestamps and offsets must not
// decrease, as TimeIndex enforces; an equal timestamp, which DumpLogSegments
// calls out of order, is a note), the offset lies inside a batch whose max
// timestamp is the entry's timestamp, matched by the batch rule, the
// record-level rule (<= 3.6 leaders), or left unverified inside compressed
// batches. A trimmed file must end with the segment's max timestamp.
//
// Txn index: structure (ParseTxnIndex) and every entry's last offset is an
// ABORT marker of its producer in this segment.
//
// The returned error is the first *IndexError found (the same finding is in
// the report), or the .log's own error (*segment.CorruptionError, torn
// tail), or an I/O error. Notes never make an error.
func VerifySegment(src io.Reader, size int64, logName string, files SideFiles, opts VerifyOptions) (*SegmentReport, error) {
	base := opts.BaseOffset
	rep := &SegmentReport{Log: logName, LogBytes: size}
	rep.Index = FileReport{Name: sideName(logName, ".index"), Present: files.Index != nil, Bytes: int64(len(files.Index))}
	rep.TimeIndex = FileReport{Name: sideName(logName, ".timeindex"), Present: files.TimeIndex != nil, Bytes: int64(len(files.TimeIndex))}
	rep.TxnIndex = FileReport{Name: sideName(logName, ".txnindex"), Present: files.TxnIndex != nil, Bytes: int64(len(files.TxnIndex))}

	oi, err := ParseOffsetIndex(rep.Index.Name, files.Index, base)
	rep.Index.Layout = oi.Layout
	rep.Index.fromErr(err)
	ti, err := ParseTimeIndex(rep.TimeIndex.Name, files.TimeIndex, base)
	rep.TimeIndex.Layout = ti.Layout
	rep.TimeIndex.fromErr(err)
	txns, err := ParseTxnIndex(rep.TxnIndex.Name, files.TxnIndex, base)
	rep.TxnIndex.Layout = Layout{Slots: len(files.TxnIndex) / TxnEntrySize, Entries: len(txns), Trimmed: true}
	rep.TxnIndex.fromErr(err)
	layoutNotes(&rep.Index, OffsetEntrySize)
	layoutNotes(&rep.TimeIndex, TimeEntrySize)

	ov := offsetVerifier{rep: &rep.Index, entries: oi.Entries, pending: -1, prevLast: -1}
	tv := timeVerifier{rep: &rep.TimeIndex, entries: ti.Entries, recordMax: opts.RecordMax, runMax: segment.NoTimestamp}
	xv := txnVerifier{rep: &rep.TxnIndex, entries: txns}

	ib := newIndexBuilder(base, opts.IndexIntervalBytes)
	ps := ProducerStateFromOpenTxns(opts.OpenTxns)
	var rebuiltTxn []byte
	var aborted []AbortedTxn
	r := segment.NewReader(src, size, logName, segment.ReaderOptions{BaseOffset: base})
	lastOffset := int64(-1)
	var markerErr error
	for r.Next() {
		b, raw := r.Batch(), r.Raw()
		ib.add(b)
		t, ok, err := ps.Append(b, raw)
		if err != nil && markerErr == nil {
			markerErr = &segment.CorruptionError{File: logName, Pos: b.Pos, BaseOffset: b.BaseOffset, Check: "control record", Err: err}
		}
		if ok {
			rebuiltTxn = appendTxnEntry(rebuiltTxn, t)
			aborted = append(aborted, t)
		}
		ov.batch(b)
		tv.batch(r, b, raw)
		xv.batch(b, raw)
		lastOffset = b.LastOffset()
	}
	logErr := r.Err()
	if logErr == nil {
		logErr = markerErr
	}
	rep.ValidBytes, rep.Batches = r.Pos(), r.Count()
	ov.finish(rep.ValidBytes, lastOffset)
	tv.finish(lastOffset)
	xv.finish()

	res := &RebuildResult{}
	res.finish(ib, ps, rebuiltTxn, r)
	res.Aborted = aborted
	rep.Rebuilt = res
	rep.Index.Reproducible = bytes.Equal(files.Index, res.OffsetIndex)
	rep.TimeIndex.Reproducible = bytes.Equal(files.TimeIndex, res.TimeIndex)
	rep.TxnIndex.Reproducible = bytes.Equal(files.TxnIndex, res.TxnIndex)
	if !rep.TxnIndex.Reproducible && !rep.TxnIndex.Corrupt && len(files.TxnIndex) > 0 {
		rep.TxnIndex.addf(0, -1, CheckMarker, false, "differs from the rebuild (%d entries vs %d); pass the transactions open at the segment start in VerifyOptions.OpenTxns", len(txns), len(aborted))
	}
	if files.TxnIndex == nil && len(aborted) == 0 {
		rep.TxnIndex.Reproducible = true // Kafka creates no file without aborted transactions
	}
	if files.Index == nil {
		rep.Index.Reproducible = false
		rep.Index.addf(0, -1, CheckMissing, false, "no .index: Kafka (>= 2.3) recovers the segment and rebuilds its indexes when it loads it")
	}
	if files.TimeIndex == nil {
		rep.TimeIndex.Reproducible = false
		rep.TimeIndex.addf(0, -1, CheckMissing, false, "no .timeindex: Kafka creates it empty and does not rebuild it; time retention then uses the .log's mtime")
	}

	if logErr != nil {
		return rep, logErr
	}
	for _, f := range []*FileReport{&rep.Index, &rep.TimeIndex, &rep.TxnIndex} {
		if f.firstErr != nil {
			return rep, f.firstErr
		}
	}
	return rep, nil
}

func layoutNotes(f *FileReport, size int) {
	if !f.Present {
		return
	}
	if !f.Trimmed {
		f.addf(int64(f.Layout.Entries*size), f.Layout.Entries, CheckPreallocated, false,
			"%d entries followed by %d zero-filled slots: not trimmed; Kafka counts every slot as an entry when it reopens the file, so restore it trimmed",
			f.Layout.Entries, f.PaddingSlots)
	}
	if f.StaleSlots > 0 {
		f.addf(int64(f.Layout.Entries*size), f.Layout.Entries, CheckStale, false, "%d slots after the zero-filled tail hold data", f.StaleSlots)
	}
}

// offsetVerifier matches .index entries against batches as they stream by.
type offsetVerifier struct {
	rep      *FileReport
	entries  []OffsetEntry
	k        int   // next entry to reach
	pending  int   // entry waiting for a later batch with lastOffset == its offset, -1 if none
	prevLast int64 // last offset of the previous batch, -1 at start
}

func (v *offsetVerifier) pos(i int) int64 { return int64(i * OffsetEntrySize) }

func (v *offsetVerifier) unexplained(i int, format string, args ...any) {
	v.rep.rule(RuleUnexplained)
	v.rep.addf(v.pos(i), i, CheckOffset, false, format, args...)
}

func (v *offsetVerifier) batch(b *segment.Batch) {
	if v.pending >= 0 {
		e := v.entries[v.pending]
		next := int64(-1)
		if v.k < len(v.entries) {
			next = int64(v.entries[v.k].Position)
		}
		switch {
		case next >= 0 && b.Pos >= next:
			v.unexplained(v.pending, "offset %d lies past every batch of the append that starts at position %d", e.Offset, e.Position)
			v.pending = -1
		case b.LastOffset() == e.Offset:
			v.rep.rule(RuleMultiBatch)
			v.pending = -1
		case b.LastOffset() > e.Offset:
			v.unexplained(v.pending, "offset %d is inside batch %d..%d, not at a batch end", e.Offset, b.BaseOffset, b.LastOffset())
			v.pending = -1
		}
	}
	for v.k < len(v.entries) && int64(v.entries[v.k].Position) < b.Pos {
		e := v.entries[v.k]
		v.rep.addf(v.pos(v.k)+4, v.k, CheckPosition, true, "position %d is not the start of a batch", e.Position)
		v.k++
	}
	if v.k < len(v.entries) && int64(v.entries[v.k].Position) == b.Pos {
		i, e := v.k, v.entries[v.k]
		v.k++
		switch {
		case v.prevLast >= e.Offset:
			v.rep.addf(v.pos(i), i, CheckLookup, true,
				"offset %d at position %d, but the batch before that position already ends at offset %d: lookups would skip data", e.Offset, e.Position, v.prevLast)
		case e.Offset == b.LastOffset():
			v.rep.rule(RuleLastOffset)
		case e.Offset == b.BaseOffset:
			v.rep.rule(RuleFirstOffset)
		case e.Offset > b.LastOffset():
			v.pending = i
		case e.Offset < b.BaseOffset:
			v.unexplained(i, "offset %d is in the gap before batch %d..%d at position %d", e.Offset, b.BaseOffset, b.LastOffset(), e.Position)
		default:
			v.unexplained(i, "offset %d is inside batch %d..%d at position %d", e.Offset, b.BaseOffset, b.LastOffset(), e.Position)
		}
	}
	v.prevLast = b.LastOffset()
}

func (v *offsetVerifier) finish(validBytes, lastOffset int64) {
	if v.pending >= 0 {
		e := v.entries[v.pending]
		v.rep.addf(v.pos(v.pending), v.pending, CheckOffset, true, "offset %d is past the log's last offset %d", e.Offset, lastOffset)
	}
	for ; v.k < len(v.entries); v.k++ {
		e := v.entries[v.k]
		v.rep.addf(v.pos(v.k)+4, v.k, CheckPosition, true, "position %d is past the end of the log's %d valid bytes", e.Position, validBytes)
	}
}

// timeVerifier matches .timeindex entries against batches.
// RecordMaxTimestamp finds the largest record timestamp of a batch and the
// offset of the first record that has it: what LogValidator used as "offset
// of max timestamp" for uncompressed leader appends up to Kafka 3.6
// (kafka-format.md §4.2). It decodes uncompressed v2 batches with
// segment.DecodeRecords; other batches, and batches that fail its checks,
// return ok=false (a caller-supplied RecordMaxFunc may handle them).
func RecordMaxTimestamp(b *segment.Batch, raw []byte) (maxTs, offset int64, ok bool) {
	if b.Magic != segment.MagicV2 || b.Codec() != segment.CodecNone {
		return 0, 0, false
	}
	maxTs, offset = segment.NoTimestamp, -1
	err := segment.DecodeRecords(b, raw, func(r *segment.Record) bool {
		if r.Timestamp > maxTs {
			maxTs, offset = r.Timestamp, r.Offset
		}
		return true
	})
	if err != nil || offset < 0 {
		return 0, 0, false
	}
	return maxTs, offset, true
}

// RecordMaxFunc computes RecordMaxTimestamp for a batch index does not read
// itself (compressed, legacy). It is called while r is positioned on that
// batch, so it can use the reader's record decoding (decompression);
// ok=false leaves the entry unverified.
type RecordMaxFunc func(r *segment.Reader) (maxTs, offset int64, ok bool)

type timeVerifier struct {
	rep       *FileReport
	entries   []TimeEntry
	j         int
	recordMax RecordMaxFunc
	runMax    int64 // running max of batch max timestamps
}

func (v *timeVerifier) pos(i int) int64 { return int64(i * TimeEntrySize) }

func (v *timeVerifier) batch(r *segment.Reader, b *segment.Batch, raw []byte) {
	if b.MaxTimestamp > v.runMax {
		v.runMax = b.MaxTimestamp
	}
	for v.j < len(v.entries) && v.entries[v.j].Offset <= b.LastOffset() {
		i, e := v.j, v.entries[v.j]
		v.j++
		if i > 0 && e.Timestamp == v.entries[i-1].Timestamp {
			v.rep.addf(v.pos(i), i, CheckTimeOrder, false, "timestamp %d repeats the previous entry's (DumpLogSegments reports it out of order; TimeIndex never appends it)", e.Timestamp)
		}
		if e.Offset < b.BaseOffset {
			v.rep.addf(v.pos(i)+8, i, CheckOffset, false, "offset %d is not in the log (gap before batch %d..%d)", e.Offset, b.BaseOffset, b.LastOffset())
			continue
		}
		if e.Timestamp != b.MaxTimestamp {
			v.rep.addf(v.pos(i), i, CheckTimestamp, true, "timestamp %d, but the batch %d..%d holding offset %d has max timestamp %d",
				e.Timestamp, b.BaseOffset, b.LastOffset(), e.Offset, b.MaxTimestamp)
			continue
		}
		if e.Timestamp < v.runMax {
			v.rep.addf(v.pos(i), i, CheckRunningMax, false, "timestamp %d is below the max timestamp %d of an earlier batch", e.Timestamp, v.runMax)
		}
		switch {
		case e.Offset == b.LastOffset():
			v.rep.rule(RuleBatchMax)
		case e.Offset == b.BaseOffset && b.Magic < segment.MagicV2:
			v.rep.rule(RuleBatchFirst)
		default:
			maxTs, off, ok := RecordMaxTimestamp(b, raw)
			if !ok && v.recordMax != nil {
				maxTs, off, ok = v.recordMax(r)
			}
			switch {
			case !ok:
				v.rep.rule(RuleUnverified)
			case maxTs == e.Timestamp && off == e.Offset:
				v.rep.rule(RuleRecordMax)
			default:
				v.rep.addf(v.pos(i)+8, i, CheckTimestamp, true, "offset %d inside batch %d..%d: its first record with the max timestamp %d is at offset %d",
					e.Offset, b.BaseOffset, b.LastOffset(), maxTs, off)
			}
		}
	}
}

func (v *timeVerifier) finish(lastOffset int64) {
	for ; v.j < len(v.entries); v.j++ {
		e := v.entries[v.j]
		v.rep.addf(v.pos(v.j)+8, v.j, CheckOffset, true, "offset %d is past the log's last offset %d", e.Offset, lastOffset)
	}
	if !v.rep.Present || !v.rep.Trimmed || v.runMax < 0 {
		return
	}
	n := len(v.entries)
	if n == 0 || v.entries[n-1].Timestamp < v.runMax {
		v.rep.addf(int64(n*TimeEntrySize), n, CheckFinalEntry, false,
			"the last entry is not the segment's max timestamp %d (no final entry: active segment?); Kafka's retention reads the largest timestamp from here", v.runMax)
	}
}

// txnVerifier checks .txnindex entries against the markers in the log.
type txnVerifier struct {
	rep     *FileReport
	entries []AbortedTxn
	j       int
}

func (v *txnVerifier) batch(b *segment.Batch, raw []byte) {
	if v.j >= len(v.entries) || !b.Control() {
		return
	}
	for v.j < len(v.entries) && v.entries[v.j].LastOffset < b.BaseOffset {
		v.notMarker(v.j)
		v.j++
	}
	if v.j >= len(v.entries) || v.entries[v.j].LastOffset != b.BaseOffset {
		return
	}
	i, e := v.j, v.entries[v.j]
	v.j++
	c, ok, err := ParseControlRecord(b, raw)
	switch {
	case err != nil || !ok || c.Type != segment.ControlAbort:
		v.rep.addf(int64(i*TxnEntrySize)+txnOffLast, i, CheckMarker, true, "last offset %d is a control batch but not an ABORT marker", e.LastOffset)
	case b.ProducerID != e.ProducerID:
		v.rep.addf(int64(i*TxnEntrySize)+txnOffProducer, i, CheckMarker, true, "producer id %d, but the ABORT marker at offset %d belongs to producer %d", e.ProducerID, e.LastOffset, b.ProducerID)
	default:
		v.rep.rule(RuleAbortMarker)
	}
}

func (v *txnVerifier) notMarker(i int) {
	v.rep.addf(int64(i*TxnEntrySize)+txnOffLast, i, CheckMarker, true, "last offset %d is not an ABORT marker in the log", v.entries[i].LastOffset)
}

func (v *txnVerifier) finish() {
	for ; v.j < len(v.entries); v.j++ {
		v.notMarker(v.j)
	}
}
