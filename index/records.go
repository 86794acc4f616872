package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/segvault/segvault/segment"
)

// Control record types (ControlRecordType.java): the int16 after the
// version in a control record's key.
const (
	ControlAbort          = 0
	ControlCommit         = 1
	ControlLeaderChange   = 2
	ControlSnapshotHeader = 3
	ControlSnapshotFooter = 4
	ControlKRaftVersion   = 5
	ControlKRaftVoters    = 6
)

const (
	controlKeySize   = 4 // version:int16 type:int16
	endTxnMarkerSize = 6 // version:int16 coordinatorEpoch:int32
	v2RecordsStart   = segment.V2HeaderSize
)

var errRecords = errors.New("malformed records")

// recordIter walks the records of an uncompressed v2 batch without
// allocating. Only the fields index needs are decoded.
type recordIter struct {
	p          []byte // unread record bytes
	n          int32  // records left per the header
	baseOffset int64
	baseTs     int64
	appendTime int64 // batch max timestamp when LogAppendTime, else -1
	err        error

	// current record
	offset    int64
	timestamp int64
	key       []byte // nil for a null key
	value     []byte // nil for a null value
}

// newRecordIter returns an iterator over the records of raw, which must be
// an uncompressed magic-2 batch as returned by segment.Reader.Raw.
func newRecordIter(b *segment.Batch, raw []byte) (recordIter, error) {
	it := recordIter{baseOffset: b.BaseOffset, baseTs: b.BaseTimestamp, appendTime: -1, n: b.RecordCount}
	if b.Magic != segment.MagicV2 || b.Codec() != segment.CodecNone {
		return it, fmt.Errorf("batch at offset %d is %s magic %d: records are not readable without decompression", b.BaseOffset, b.Codec(), b.Magic)
	}
	if len(raw) < v2RecordsStart {
		return it, errRecords
	}
	if b.LogAppendTime() {
		it.appendTime = b.MaxTimestamp
	}
	it.p = raw[v2RecordsStart:]
	return it, nil
}

func uvarint(p []byte) (uint64, []byte, bool) {
	u, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, p, false
	}
	return u, p[n:], true
}

func varlong(p []byte) (int64, []byte, bool) {
	u, p, ok := uvarint(p)
	return int64(u>>1) ^ -int64(u&1), p, ok
}

// bytesField reads a varint length and that many bytes; -1 is null.
func bytesField(p []byte) ([]byte, []byte, bool) {
	l, p, ok := varlong(p)
	if !ok || l < -1 || l > int64(len(p)) {
		return nil, p, false
	}
	if l < 0 {
		return nil, p, true
	}
	return p[:l:l], p[l:], true
}

// next decodes the next record. It returns false at the end or on a
// malformed record (see err).
func (it *recordIter) next() bool {
	if it.err != nil || it.n <= 0 {
		return false
	}
	it.n--
	l, p, ok := varlong(it.p)
	if !ok || l < 1 || l > int64(len(p)) {
		it.err = errRecords
		return false
	}
	rec, rest := p[:l], p[l:]
	rec = rec[1:] // attributes
	tsDelta, rec, ok1 := varlong(rec)
	offDelta, rec, ok2 := varlong(rec)
	key, rec, ok3 := bytesField(rec)
	value, _, ok4 := bytesField(rec)
	if !ok1 || !ok2 || !ok3 || !ok4 || offDelta < 0 || offDelta > 1<<31-1 {
		it.err = errRecords
		return false
	}
	it.offset = it.baseOffset + offDelta
	it.timestamp = it.baseTs + tsDelta
	if it.appendTime >= 0 {
		it.timestamp = it.appendTime
	}
	it.key, it.value = key, value
	it.p = rest
	return true
}

// ControlRecord is the decoded key (and, for transaction markers, value) of
// a control batch's first record.
type ControlRecord struct {
	Type             int16 // Control* constant
	Offset           int64
	Timestamp        int64 // record timestamp (what ProducerStateManager stores for markers)
	CoordinatorEpoch int32 // transaction markers only, else -1
}

// ParseControlRecord decodes the first record of an uncompressed control
// batch (segment.Reader's Raw): key = version:int16 type:int16, and for
// ABORT/COMMIT value = version:int16 coordinatorEpoch:int32. ok is false for
// a batch that is not an uncompressed v2 control batch or has no records
// (the cleaner may leave empty control batches); err reports a malformed one.
func ParseControlRecord(b *segment.Batch, raw []byte) (c ControlRecord, ok bool, err error) {
	if !b.Control() || b.Magic != segment.MagicV2 || b.RecordCount == 0 {
		return c, false, nil
	}
	it, err := newRecordIter(b, raw)
	if err != nil {
		return c, false, err
	}
	if !it.next() {
		if it.err != nil {
			return c, false, fmt.Errorf("control batch at offset %d: %w", b.BaseOffset, it.err)
		}
		return c, false, nil
	}
	if len(it.key) < controlKeySize {
		return c, false, fmt.Errorf("control batch at offset %d: control record key of %d bytes, need %d", b.BaseOffset, len(it.key), controlKeySize)
	}
	c = ControlRecord{Type: int16(binary.BigEndian.Uint16(it.key[2:])), Offset: it.offset, Timestamp: it.timestamp, CoordinatorEpoch: -1}
	if c.Type == ControlAbort || c.Type == ControlCommit {
		if len(it.value) < endTxnMarkerSize {
			return c, false, fmt.Errorf("transaction marker at offset %d: value of %d bytes, need %d", it.offset, len(it.value), endTxnMarkerSize)
		}
		c.CoordinatorEpoch = int32(binary.BigEndian.Uint32(it.value[2:]))
	}
	return c, true, nil
}

// lastControlType returns the type of the last record of an uncompressed
// control batch.
func lastControlType(b *segment.Batch, raw []byte) (int16, bool) {
	it, err := newRecordIter(b, raw)
	if err != nil {
		return 0, false
	}
	typ, ok := int16(0), false
	for it.next() {
		if len(it.key) < controlKeySize {
			return 0, false
		}
		typ, ok = int16(binary.BigEndian.Uint16(it.key[2:])), true
	}
	return typ, ok && it.err == nil
}

// RecordMaxTimestamp finds the largest record timestamp of a batch and the
// offset of the first record that has it: what LogValidator used as "offset
// of max timestamp" for uncompressed leader appends up to Kafka 3.6
// (kafka-format.md §4.2). It reads uncompressed v2 batches itself; other
// batches return ok=false unless a caller-supplied RecordMaxFunc handles them.
func RecordMaxTimestamp(b *segment.Batch, raw []byte) (maxTs, offset int64, ok bool) {
	it, err := newRecordIter(b, raw)
	if err != nil {
		return 0, 0, false
	}
	maxTs, offset = segment.NoTimestamp, -1
	for it.next() {
		if it.timestamp > maxTs {
			maxTs, offset = it.timestamp, it.offset
		}
	}
	if it.err != nil || offset < 0 {
		return 0, 0, false
	}
	return maxTs, offset, true
}

// RecordMaxFunc computes RecordMaxTimestamp for a batch index cannot read
// itself (compressed, legacy). It is called while r is positioned on that
// batch, so it can use the reader's record decoding (decompression);
// ok=false leaves the entry unverified.
type RecordMaxFunc func(r *segment.Reader) (maxTs, offset int64, ok bool)
