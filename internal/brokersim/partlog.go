package brokersim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

// logConfig is what a partition log needs from the broker config.
type logConfig struct {
	segmentBytes  int64
	indexInterval int64
	sync          bool
	forgetRecords bool
	step          func(string)
	// scheduleDelete hands paths to the broker's delayed-delete queue
	// (file.delete.delay.ms).
	scheduleDelete func(paths ...string)
}

// logSegment is one segment of a partition. Fields below "active only" are
// meaningful while the segment is the active one.
type logSegment struct {
	base     int64
	size     int64
	maxTs    int64 // largest batch max timestamp, -1 before the first
	maxTsOff int64 // last offset of the first batch with maxTs
	hasTxn   bool  // a .txnindex exists

	// active only
	log         *os.File
	idx, tidx   *os.File // nil until the first append (LazyIndex)
	idxN, tidxN int64    // entries written
	lastTimeTs  int64    // timestamp of the last time-index entry, -1 for none
	bytesSince  int64    // bytesSinceLastIndexEntry
	lastTxnOff  int64    // last offset of the last .txnindex entry
}

func (s *logSegment) path(dir string, kind segment.FileKind) string {
	return filepath.Join(dir, segment.FormatName(s.base, kind))
}

// producerState is a ProducerStateEntry keeping only the last batch's
// metadata, which is all a snapshot stores.
type producerState struct {
	epoch           int16
	hasBatch        bool
	lastSeq         int32
	lastOffset      int64
	offsetDelta     int32
	timestamp       int64
	coordEpoch      int32
	currentTxnFirst int64 // -1 when no transaction is open
}

type abortedTxn struct {
	producerID  int64
	firstOffset int64
	lastOffset  int64
}

// partLog writes one partition directory the way a Kafka leader does, one
// batch per append. All methods need mu held unless noted.
type partLog struct {
	mu        sync.Mutex
	cfg       *logConfig
	topic     string
	part      int32
	topicID   string
	dir       string
	segs      []*logSegment // ascending; the last is active
	leo       int64
	epoch     int32
	epochs    []index.EpochEntry
	producers map[int64]*producerState
	aborted   []abortedTxn
	records   []Record
	markers   int
	closed    bool

	// Read without mu by the root checkpoint writer.
	recoveryPoint atomic.Int64
	highWatermark atomic.Int64
	logStart      atomic.Int64
	cleanerPoint  atomic.Int64 // first dirty offset; -1 before any cleaning
}

// newPartLog creates the partition directory as a new leader replica: the
// dir, partition.metadata, the leader-epoch-checkpoint with (epoch, 0) and
// an empty first segment whose indexes are preallocated (LogLoader resizes
// the last segment's indexes to segment.index.bytes).
func newPartLog(cfg *logConfig, root, topic string, part int32, topicID string, epoch int32) (*partLog, error) {
	p := &partLog{cfg: cfg, topic: topic, part: part, topicID: topicID, epoch: epoch,
		dir: filepath.Join(root, fmt.Sprintf("%s-%d", topic, part)), producers: map[int64]*producerState{}}
	p.cleanerPoint.Store(-1)
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create partition dir: %w", err)
	}
	if err := writeAtomic(filepath.Join(p.dir, index.PartitionMetadataFile), index.FormatPartitionMetadata(topicID), cfg.sync); err != nil {
		return nil, err
	}
	p.epochs = []index.EpochEntry{{Epoch: epoch, StartOffset: 0}}
	if err := p.writeEpochs(); err != nil {
		return nil, err
	}
	if err := p.openSegment(0); err != nil {
		return nil, err
	}
	if err := p.createIndexes(p.active()); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *partLog) active() *logSegment { return p.segs[len(p.segs)-1] }

func (p *partLog) writeEpochs() error {
	return writeAtomic(filepath.Join(p.dir, index.LeaderEpochCheckpointFile), index.FormatLeaderEpochCheckpoint(p.epochs), p.cfg.sync)
}

// openSegment creates a new active segment's .log. Its indexes appear at
// the first append, when LogSegment.shouldRoll first touches them.
func (p *partLog) openSegment(base int64) error {
	s := &logSegment{base: base, maxTs: -1, maxTsOff: base, lastTimeTs: -1, lastTxnOff: -1}
	path := s.path(p.dir, segment.KindLog)
	// LocalLog.roll deletes pre-existing files with the new name.
	for _, k := range []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex, segment.KindTxnIndex} {
		if err := os.Remove(s.path(p.dir, k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("roll %s: %w", s.path(p.dir, k), err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	s.log = f
	p.segs = append(p.segs, s)
	p.recoveryPoint.Store(base)
	p.logStart.Store(p.segs[0].base)
	return nil
}

// createIndexes creates the sparse, zero-filled, preallocated index files.
func (p *partLog) createIndexes(s *logSegment) error {
	if s.idx != nil {
		return nil
	}
	open := func(kind segment.FileKind, n int64) (*os.File, error) {
		f, err := os.OpenFile(s.path(p.dir, kind), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create index: %w", err)
		}
		if err := f.Truncate(n); err != nil {
			return nil, errors.Join(fmt.Errorf("preallocate %s: %w", f.Name(), err), f.Close())
		}
		return f, nil
	}
	var err error
	if s.idx, err = open(segment.KindIndex, OffsetIndexAllocated); err != nil {
		return err
	}
	s.tidx, err = open(segment.KindTimeIndex, TimeIndexAllocated)
	return err
}

func (p *partLog) appendOffsetEntry(s *logSegment, off int64, pos int64) error {
	var b [offsetEntrySize]byte
	binary.BigEndian.PutUint32(b[:], uint32(off-s.base))
	binary.BigEndian.PutUint32(b[4:], uint32(pos))
	if _, err := s.idx.WriteAt(b[:], s.idxN*offsetEntrySize); err != nil {
		return fmt.Errorf("append offset index: %w", err)
	}
	s.idxN++
	return nil
}

// maybeAppendTime is TimeIndex.maybeAppend: only a strictly larger
// timestamp makes an entry.
func (p *partLog) maybeAppendTime(s *logSegment) error {
	if s.maxTs <= s.lastTimeTs {
		return nil
	}
	var b [timeEntrySize]byte
	binary.BigEndian.PutUint64(b[:], uint64(s.maxTs))
	binary.BigEndian.PutUint32(b[8:], uint32(s.maxTsOff-s.base))
	if _, err := s.tidx.WriteAt(b[:], s.tidxN*timeEntrySize); err != nil {
		return fmt.Errorf("append time index: %w", err)
	}
	s.tidxN++
	s.lastTimeTs = s.maxTs
	return nil
}

// appendBatch appends one fetched batch as one leader append. raw is the
// whole batch; its partitionLeaderEpoch (outside the CRC) is overwritten
// with the leader's epoch, as UnifiedLog.append does for leader appends.
func (p *partLog) appendBatch(raw []byte, b *segment.Batch) error {
	if p.closed {
		return errors.New("partition closed")
	}
	if b.BaseOffset != p.leo {
		return fmt.Errorf("%s-%d: batch base offset %d, log end offset %d", p.topic, p.part, b.BaseOffset, p.leo)
	}
	binary.BigEndian.PutUint32(raw[12:], uint32(p.epoch))
	size := int64(len(raw))
	s := p.active()
	// LogSegment.shouldRoll: size > segment.bytes - messagesSize (an empty
	// segment takes any batch: oversized batches are rejected at produce).
	if s.size > 0 && s.size > p.cfg.segmentBytes-size {
		if err := p.roll(b.BaseOffset); err != nil {
			return err
		}
		s = p.active()
	}
	if err := p.createIndexes(s); err != nil {
		return err
	}
	pos := s.size
	if _, err := s.log.Write(raw); err != nil {
		return fmt.Errorf("append %s: %w", s.log.Name(), err)
	}
	s.size += size
	// Batch-level "offset of max timestamp" (Kafka >= 3.8): one batch per
	// append, so it is the batch's last offset.
	if b.MaxTimestamp > s.maxTs {
		s.maxTs, s.maxTsOff = b.MaxTimestamp, b.LastOffset()
	}
	if s.bytesSince > p.cfg.indexInterval {
		if err := p.appendOffsetEntry(s, b.LastOffset(), pos); err != nil {
			return err
		}
		if err := p.maybeAppendTime(s); err != nil {
			return err
		}
		s.bytesSince = 0
	}
	s.bytesSince += size
	p.leo = b.NextOffset()
	p.highWatermark.Store(p.leo)
	return p.updateProducerState(raw, b, s)
}

// updateProducerState follows ProducerAppendInfo and writes the .txnindex
// entry of an aborted transaction (UnifiedLog.append → updateTxnIndex).
func (p *partLog) updateProducerState(raw []byte, b *segment.Batch, s *logSegment) error {
	if b.ProducerID < 0 {
		return nil
	}
	e := p.producers[b.ProducerID]
	if e == nil {
		e = &producerState{epoch: b.ProducerEpoch, coordEpoch: -1, currentTxnFirst: -1}
		p.producers[b.ProducerID] = e
	}
	if e.epoch != b.ProducerEpoch { // maybeUpdateProducerEpoch clears the batch metadata
		e.epoch, e.hasBatch = b.ProducerEpoch, false
	}
	if !b.Control() {
		if b.Transactional() && e.currentTxnFirst < 0 {
			e.currentTxnFirst = b.BaseOffset
		}
		e.hasBatch = true
		e.lastSeq = b.BaseSequence + b.LastOffsetDelta
		e.lastOffset = b.LastOffset()
		e.offsetDelta = b.LastOffsetDelta
		e.timestamp = b.MaxTimestamp
		return nil
	}
	abort, coordEpoch, err := parseTxnMarker(raw, b)
	if err != nil {
		return fmt.Errorf("%s-%d offset %d: %w", p.topic, p.part, b.BaseOffset, err)
	}
	p.markers++
	first := e.currentTxnFirst
	e.currentTxnFirst = -1
	e.coordEpoch = coordEpoch
	e.timestamp = b.MaxTimestamp
	if !abort || first < 0 { // CompletedTxn only for non-empty transactions
		return nil
	}
	// ProducerStateManager.lastStableOffset: the first offset of another
	// producer's open transaction, else the marker's offset + 1.
	lso := b.BaseOffset + 1
	for pid, o := range p.producers {
		if pid != b.ProducerID && o.currentTxnFirst >= 0 && o.currentTxnFirst < lso {
			lso = o.currentTxnFirst
		}
	}
	p.aborted = append(p.aborted, abortedTxn{producerID: b.ProducerID, firstOffset: first, lastOffset: b.BaseOffset})
	return p.appendTxnIndex(s, b.ProducerID, first, b.BaseOffset, lso)
}

// appendTxnIndex appends a 34-byte AbortedTxn entry, creating the file with
// the first one (TransactionIndex opens its channel lazily).
func (p *partLog) appendTxnIndex(s *logSegment, pid, first, last, lso int64) error {
	if last <= s.lastTxnOff {
		return fmt.Errorf("aborted transaction last offset %d not above %d", last, s.lastTxnOff)
	}
	var e [txnEntrySize]byte
	binary.BigEndian.PutUint16(e[0:], 0)
	binary.BigEndian.PutUint64(e[2:], uint64(pid))
	binary.BigEndian.PutUint64(e[10:], uint64(first))
	binary.BigEndian.PutUint64(e[18:], uint64(last))
	binary.BigEndian.PutUint64(e[26:], uint64(lso))
	f, err := os.OpenFile(s.path(p.dir, segment.KindTxnIndex), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("append txn index: %w", err)
	}
	_, err = f.Write(e[:])
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("append txn index: %w", err)
	}
	s.hasTxn = true
	s.lastTxnOff = last
	return nil
}

// parseTxnMarker reads the control record of a transaction marker batch:
// key version:int16 type:int16, value version:int16 coordinatorEpoch:int32.
func parseTxnMarker(raw []byte, b *segment.Batch) (abort bool, coordEpoch int32, err error) {
	if b.Codec() != segment.CodecNone || b.RecordCount != 1 || len(raw) <= segment.V2HeaderSize {
		return false, 0, fmt.Errorf("control batch is not one uncompressed record")
	}
	var r kmsg.Record
	if err := r.ReadFrom(raw[segment.V2HeaderSize:]); err != nil {
		return false, 0, fmt.Errorf("control record: %w", err)
	}
	var k kmsg.ControlRecordKey
	if err := k.ReadFrom(r.Key); err != nil {
		return false, 0, fmt.Errorf("control record key: %w", err)
	}
	var v kmsg.EndTxnMarker
	if err := v.ReadFrom(r.Value); err != nil {
		return false, 0, fmt.Errorf("end txn marker: %w", err)
	}
	switch k.Type {
	case kmsg.ControlRecordKeyTypeAbort:
		return true, v.CoordinatorEpoch, nil
	case kmsg.ControlRecordKeyTypeCommit:
		return false, v.CoordinatorEpoch, nil
	}
	return false, 0, fmt.Errorf("control record type %d is not a transaction marker", k.Type)
}

// snapshot returns the producer state as a snapshot file holds it.
func (p *partLog) snapshot() []index.ProducerEntry {
	out := make([]index.ProducerEntry, 0, len(p.producers))
	for pid, e := range p.producers {
		pe := index.ProducerEntry{ProducerID: pid, Epoch: e.epoch, LastSequence: -1, LastOffset: -1,
			Timestamp: e.timestamp, CoordinatorEpoch: e.coordEpoch, CurrentTxnFirstOffset: e.currentTxnFirst}
		if e.hasBatch {
			pe.LastSequence, pe.LastOffset, pe.OffsetDelta = e.lastSeq, e.lastOffset, e.offsetDelta
		}
		out = append(out, pe)
	}
	slices.SortFunc(out, func(a, b index.ProducerEntry) int { return cmpInt64(a.ProducerID, b.ProducerID) })
	return out
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// roll follows LocalLog.roll + UnifiedLog.roll: the old active segment gets
// its final time-index entry and trimmed indexes (onBecomeInactiveSegment),
// a new segment opens at newBase, and <newBase>.snapshot is written.
func (p *partLog) roll(newBase int64) error {
	s := p.active()
	if err := p.deactivate(s, true); err != nil {
		return err
	}
	if err := p.openSegment(newBase); err != nil {
		return err
	}
	snap := filepath.Join(p.dir, segment.FormatName(newBase, segment.KindSnapshot))
	if err := os.WriteFile(snap, index.EncodeProducerSnapshot(p.snapshot()), 0o644); err != nil {
		return fmt.Errorf("write producer snapshot: %w", err)
	}
	return nil
}

// deactivate closes the active segment's files. With trim (a roll) it
// first appends the final time-index entry and trims both indexes to their
// entries; without (a crash or a topic deletion) the files stay as they are.
func (p *partLog) deactivate(s *logSegment, trim bool) error {
	var errs []error
	if trim && s.idx != nil {
		errs = append(errs, p.maybeAppendTime(s))
		errs = append(errs, s.idx.Truncate(s.idxN*offsetEntrySize), s.tidx.Truncate(s.tidxN*timeEntrySize))
	}
	for _, f := range []*os.File{s.log, s.idx, s.tidx} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	s.log, s.idx, s.tidx = nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close segment %d of %s-%d: %w", s.base, p.topic, p.part, err)
	}
	if trim && s.maxTs >= 0 {
		// A convenience, not Kafka: make mtimes match the data's time,
		// since the broker would have written the segment then.
		t := time.UnixMilli(s.maxTs)
		for _, k := range []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex} {
			_ = os.Chtimes(s.path(p.dir, k), t, t)
		}
	}
	return nil
}

// forceRoll is Roll: like a segment.ms roll, only when the active segment
// holds data. It reports whether a roll happened.
func (p *partLog) forceRoll() (bool, error) {
	if p.closed {
		return false, errors.New("partition closed")
	}
	if p.active().size == 0 {
		return false, nil
	}
	return true, p.roll(p.leo)
}

// bumpEpoch is a leader election: the new epoch starts at the log end
// (LeaderEpochFileCache.assign drops entries it supersedes).
func (p *partLog) bumpEpoch() error {
	p.epoch++
	keep := p.epochs[:0]
	for _, e := range p.epochs {
		if e.StartOffset < p.leo {
			keep = append(keep, e)
		}
	}
	p.epochs = append(keep, index.EpochEntry{Epoch: p.epoch, StartOffset: p.leo})
	return p.writeEpochs()
}

// close leaves the files as a killed broker would: active indexes stay
// preallocated.
func (p *partLog) close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	return p.deactivate(p.active(), false)
}

// closeClean is UnifiedLog.close on a clean shutdown: a producer snapshot
// at the log end, and the active segment closed like a rolled one (final
// time-index entry, indexes trimmed); the log is then fully flushed.
func (p *partLog) closeClean() error {
	if p.closed {
		return nil
	}
	p.closed = true
	snap := filepath.Join(p.dir, segment.FormatName(p.leo, segment.KindSnapshot))
	if err := os.WriteFile(snap, index.EncodeProducerSnapshot(p.snapshot()), 0o644); err != nil {
		return fmt.Errorf("write producer snapshot: %w", err)
	}
	s := p.active()
	if err := p.deactivate(s, true); err != nil {
		return err
	}
	p.recoveryPoint.Store(p.leo)
	return nil
}

// addRecords records what producers wrote, keeping offset order.
func (p *partLog) addRecords(rs []Record) {
	if p.cfg.forgetRecords || len(rs) == 0 {
		return
	}
	byOffset := func(a, b Record) int { return cmpInt64(a.Offset, b.Offset) }
	slices.SortFunc(rs, byOffset)
	sorted := len(p.records) == 0 || p.records[len(p.records)-1].Offset < rs[0].Offset
	p.records = append(p.records, rs...)
	if !sorted {
		slices.SortFunc(p.records, byOffset)
	}
}

func (p *partLog) result() PartitionResult {
	r := PartitionResult{Topic: p.topic, Partition: p.part, Dir: p.dir, Records: slices.Clone(p.records),
		LogStartOffset: p.segs[0].base, LogEndOffset: p.leo, Markers: p.markers, AbortedTxns: len(p.aborted)}
	for _, s := range p.segs {
		r.Segments = append(r.Segments, s.base)
	}
	return r
}

func (p *partLog) step(s string) {
	if p.cfg.step != nil {
		p.cfg.step(s)
	}
}
