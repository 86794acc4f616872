package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Record is one record as a Kafka consumer sees it.
//
// Key, Value and Headers alias the Reader's buffers (the file buffer for an
// uncompressed batch, the decompression buffer otherwise): they are valid
// until the next call to Reader.Next or Reader.Records. Copy what must live
// longer.
type Record struct {
	Offset int64 // absolute offset
	// Timestamp is what a consumer sees: the record's own timestamp for
	// CreateTime batches, the batch's MaxTimestamp (the broker's append time)
	// for LogAppendTime batches, -1 (NoTimestamp) for magic 0.
	Timestamp  int64
	Attributes int8     // the record's attributes byte (unused by Kafka in v2)
	Key        []byte   // nil when the key is null
	Value      []byte   // nil when the value is null (a tombstone)
	Headers    []Header // nil when none; always nil for magic 0/1
}

// Header is one record header. Kafka keys are strings; they stay bytes here
// so that decoding allocates nothing.
type Header struct {
	Key   []byte
	Value []byte // nil when null
}

// Sizes of the v2 record's smallest encoding: one byte each for length,
// attributes, timestamp delta, offset delta, key length, value length and
// header count.
const (
	minRecordSize = 7
	minHeaderSize = 2 // key length + value length
)

// recordDecoder decodes one batch's records at a time into reused slices.
type recordDecoder struct {
	decompressor
	recs []Record
	hdrs []Header
}

func newRecordDecoder(limit int) *recordDecoder {
	return &recordDecoder{decompressor: decompressor{limit: limit}}
}

// batchCheck is a failed deep check: its name and detail.
type batchCheck struct {
	check string
	err   error
}

func fail(check, format string, args ...any) *batchCheck {
	return &batchCheck{check: check, err: fmt.Errorf(format, args...)}
}

// recFail is a failed record check, prefixed with the record's position.
func recFail(n, at int, compressed bool, check, format string, args ...any) *batchCheck {
	return fail(check, "%s: %s", where(n, at, compressed), fmt.Sprintf(format, args...))
}

// where names a record's position for error messages: inside the batch for
// uncompressed data, inside the decompressed stream otherwise.
func where(n, at int, compressed bool) string {
	if compressed {
		return fmt.Sprintf("record %d at decompressed byte %d", n, at)
	}
	return fmt.Sprintf("record %d at batch byte %d", n, at)
}

// decodeV2 decompresses and parses a v2 batch's records and runs every
// record-level check (package doc, "Deep checks").
func (d *recordDecoder) decodeV2(b *Batch, raw []byte) ([]Record, *batchCheck) {
	data := raw[V2HeaderSize:]
	compressed := false
	if b.Codec() != CodecNone && !(b.RecordCount == 0 && len(data) == 0) {
		out, err := d.decompress(b.Codec(), data, false)
		if err != nil {
			return nil, &batchCheck{check: "decompress", err: err}
		}
		data, compressed = out, true
	}
	recs, bc := d.parseV2(b, data, compressed)
	if bc != nil {
		return nil, bc
	}
	if b.Control() {
		if bc := checkControl(b, recs); bc != nil {
			return nil, bc
		}
	}
	return recs, nil
}

// parseV2 parses records from data. Offset deltas must rise strictly within
// [0, lastOffsetDelta]. With as many records as the offset range holds that
// pins them to exactly 0..lastOffsetDelta, the producer's layout; with fewer
// (only the log cleaner writes such batches: it keeps a batch's base and last
// offset when it drops records) gaps and a smaller last delta are accepted.
func (d *recordDecoder) parseV2(b *Batch, p []byte, compressed bool) ([]Record, *batchCheck) {
	recs, hdrs := d.recs[:0], d.hdrs[:0]
	defer func() { d.recs, d.hdrs = recs[:0], hdrs[:0] }()
	at := 0 // position of p[0] in the batch, for messages
	if !compressed {
		at = V2HeaderSize
	}
	if int64(len(p)) < int64(b.RecordCount)*minRecordSize {
		return nil, fail("record count", "batch declares %d records but its %d bytes of records hold at most %d",
			b.RecordCount, len(p), len(p)/minRecordSize)
	}
	logAppend := b.LogAppendTime()
	prevDelta := int32(-1)
	maxTS := int64(math.MinInt64)
	i := 0
	for n := 0; i < len(p); n++ {
		start := i
		if n >= int(b.RecordCount) {
			return nil, fail("record count", "%d bytes after the %d records the batch declares, at byte %d",
				len(p)-i, b.RecordCount, at+i)
		}
		length, j := varint32(p, i)
		if j < 0 {
			return nil, recFail(n, at+start, compressed, "record", "record length: %s", varintErr(j))
		}
		if length < 0 || int(length) > len(p)-j {
			return nil, recFail(n, at+start, compressed, "record", "record length %d with %d bytes left", length, len(p)-j)
		}
		end := j + int(length)
		q := p[:end] // the record's fields may not run past its length
		i = j
		if i >= end {
			return nil, recFail(n, at+start, compressed, "record", "record length %d too short for its attributes", length)
		}
		attr := int8(q[i])
		i++
		tsDelta, k := varint64(q, i)
		if k < 0 {
			return nil, recFail(n, at+start, compressed, "record", "timestamp delta: %s", varintErr(k))
		}
		offDelta, k2 := varint32(q, k)
		if k2 < 0 {
			return nil, recFail(n, at+start, compressed, "record", "offset delta: %s", varintErr(k2))
		}
		i = k2
		key, k4 := bytesField(q, i)
		if k4 < 0 {
			return nil, recFail(n, at+start, compressed, "record", "%s", fieldErr(q, i, "key"))
		}
		value, k5 := bytesField(q, k4)
		if k5 < 0 {
			return nil, recFail(n, at+start, compressed, "record", "%s", fieldErr(q, k4, "value"))
		}
		i = k5
		nh, k3 := varint32(q, i)
		if k3 < 0 {
			return nil, recFail(n, at+start, compressed, "record", "header count: %s", varintErr(k3))
		}
		i = k3
		if nh < 0 || int(nh) > (end-i)/minHeaderSize {
			return nil, recFail(n, at+start, compressed, "record", "header count %d with %d bytes left", nh, end-i)
		}
		h0 := len(hdrs)
		for h := 0; h < int(nh); h++ {
			hk, k6 := bytesField(q, i)
			if k6 < 0 {
				return nil, recFail(n, at+start, compressed, "record", "header %d: %s", h, fieldErr(q, i, "header key"))
			}
			if hk == nil {
				return nil, recFail(n, at+start, compressed, "record", "header %d: null header key", h)
			}
			hv, k7 := bytesField(q, k6)
			if k7 < 0 {
				return nil, recFail(n, at+start, compressed, "record", "header %d: %s", h, fieldErr(q, k6, "header value"))
			}
			i = k7
			hdrs = append(hdrs, Header{Key: hk, Value: hv})
		}
		if i != end {
			return nil, recFail(n, at+start, compressed, "record", "record length %d but its fields take %d bytes", length, i-j)
		}
		if offDelta < 0 || offDelta <= prevDelta {
			return nil, recFail(n, at+start, compressed, "offset", "offset delta %d not above the previous record's %d", offDelta, prevDelta)
		}
		if offDelta > b.LastOffsetDelta {
			return nil, recFail(n, at+start, compressed, "offset", "offset delta %d above the batch's last offset delta %d", offDelta, b.LastOffsetDelta)
		}
		prevDelta = offDelta
		ts, ok := addTimestamp(b.BaseTimestamp, tsDelta)
		if !ok {
			return nil, recFail(n, at+start, compressed, "timestamp", "base timestamp %d + delta %d overflows", b.BaseTimestamp, tsDelta)
		}
		maxTS = max(maxTS, ts)
		if logAppend {
			ts = b.MaxTimestamp
		}
		r := Record{Offset: b.BaseOffset + int64(offDelta), Timestamp: ts, Attributes: attr, Key: key, Value: value}
		if nh > 0 {
			r.Headers = hdrs[h0:len(hdrs):len(hdrs)]
		}
		recs = append(recs, r)
		i = end
	}
	if len(recs) != int(b.RecordCount) {
		return nil, fail("record count", "batch declares %d records, holds %d", b.RecordCount, len(recs))
	}
	if !logAppend && len(recs) > 0 && maxTS != b.MaxTimestamp {
		return nil, fail("timestamp", "largest record timestamp %d, batch max timestamp %d", maxTS, b.MaxTimestamp)
	}
	// append may have moved hdrs: point every Headers at the final array.
	if len(hdrs) > 0 {
		k := 0
		for n := range recs {
			if c := len(recs[n].Headers); c > 0 {
				recs[n].Headers = hdrs[k : k+c : k+c]
				k += c
			}
		}
	}
	return recs, nil
}

// bytesField reads a varint length (-1 = null) and that many bytes. On
// failure the returned position is negative; fieldErr explains it.
func bytesField(p []byte, i int) ([]byte, int) {
	n, j := varint32(p, i)
	if j < 0 || n < -1 || int(n) > len(p)-j {
		return nil, -1
	}
	if n == -1 {
		return nil, j
	}
	return p[j : j+int(n) : j+int(n)], j + int(n)
}

// fieldErr describes why bytesField failed at p[i:].
func fieldErr(p []byte, i int, name string) string {
	n, j := varint32(p, i)
	switch {
	case j < 0:
		return fmt.Sprintf("%s length: %s", name, varintErr(j))
	case n < -1:
		return fmt.Sprintf("%s length %d", name, n)
	}
	return fmt.Sprintf("%s length %d with %d bytes left in the record", name, n, len(p)-j)
}

// addTimestamp adds a timestamp delta, reporting int64 overflow.
func addTimestamp(base, delta int64) (int64, bool) {
	s := base + delta
	if (delta > 0 && s < base) || (delta < 0 && s > base) {
		return 0, false
	}
	return s, true
}

// Varint errors, returned as negative positions by varint32/varint64.
const (
	varintShort    = -1 // input ended inside the varint
	varintOverflow = -2 // more bits than the type holds
)

func varintErr(code int) string {
	if code == varintShort {
		return "truncated varint"
	}
	return "varint overflows"
}

// varint32 decodes a zigzag varint of at most 5 bytes (Kafka's
// ByteUtils.readVarint) at p[i:], returning the value and the position after
// it, or a negative error code as the position.
func varint32(p []byte, i int) (int32, int) {
	if uint(i) < uint(len(p)) { // one byte, the common case, stays inlinable
		if c := p[i]; c < 0x80 {
			return int32(c>>1) ^ -int32(c&1), i + 1
		}
	}
	return varint32Slow(p, i)
}

//go:noinline
func varint32Slow(p []byte, i int) (int32, int) {
	var u uint32
	for shift := uint(0); ; shift += 7 {
		if i >= len(p) {
			return 0, varintShort
		}
		c := p[i]
		i++
		if shift == 28 && c > 0x0f {
			return 0, varintOverflow
		}
		u |= uint32(c&0x7f) << shift
		if c < 0x80 {
			return int32(u>>1) ^ -int32(u&1), i
		}
	}
}

// varint64 decodes a zigzag varlong of at most 10 bytes (ByteUtils.readVarlong).
func varint64(p []byte, i int) (int64, int) {
	if uint(i) < uint(len(p)) {
		if c := p[i]; c < 0x80 {
			return int64(c>>1) ^ -int64(c&1), i + 1
		}
	}
	return varint64Slow(p, i)
}

//go:noinline
func varint64Slow(p []byte, i int) (int64, int) {
	var u uint64
	for shift := uint(0); ; shift += 7 {
		if i >= len(p) {
			return 0, varintShort
		}
		c := p[i]
		i++
		if shift == 63 && c > 1 {
			return 0, varintOverflow
		}
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), i
		}
	}
}

// ControlType is a control record's type (ControlRecordType.java).
type ControlType int16

// Control record types. 0 and 1 are transaction markers; 2-6 are KRaft's.
const (
	ControlAbort          ControlType = 0
	ControlCommit         ControlType = 1
	ControlLeaderChange   ControlType = 2
	ControlSnapshotHeader ControlType = 3
	ControlSnapshotFooter ControlType = 4
	ControlKRaftVersion   ControlType = 5
	ControlKRaftVoters    ControlType = 6
	maxControlType                    = ControlKRaftVoters
)

var controlNames = [...]string{"ABORT", "COMMIT", "LEADER_CHANGE", "SNAPSHOT_HEADER", "SNAPSHOT_FOOTER", "KRAFT_VERSION", "KRAFT_VOTERS"}

func (t ControlType) String() string {
	if t >= 0 && int(t) < len(controlNames) {
		return controlNames[t]
	}
	return fmt.Sprintf("control(%d)", int16(t))
}

// ParseControlKey reads a control record's key, version:int16 type:int16.
// Kafka reads keys of any version >= 0 the same way; a type outside 0-6 is
// rejected because no Kafka release writes one.
func ParseControlKey(key []byte) (ControlType, error) {
	if len(key) < 4 {
		return 0, fmt.Errorf("control record key of %d bytes, want at least 4", len(key))
	}
	if v := int16(binary.BigEndian.Uint16(key)); v < 0 {
		return 0, fmt.Errorf("control record key version %d", v)
	}
	t := ControlType(binary.BigEndian.Uint16(key[2:]))
	if t < 0 || t > maxControlType {
		return t, fmt.Errorf("unknown control record type %d", int16(t))
	}
	return t, nil
}

// ParseEndTxnMarker reads a COMMIT/ABORT marker's value,
// version:int16 coordinatorEpoch:int32 (EndTransactionMarker.java), and
// returns the coordinator epoch.
func ParseEndTxnMarker(value []byte) (int32, error) {
	if len(value) < 6 {
		return 0, fmt.Errorf("transaction marker value of %d bytes, want at least 6", len(value))
	}
	if v := int16(binary.BigEndian.Uint16(value)); v < 0 {
		return 0, fmt.Errorf("transaction marker value version %d", v)
	}
	return int32(binary.BigEndian.Uint32(value[2:])), nil
}

// checkControl validates a control batch's records: transaction markers
// stand alone in a transactional batch and carry a marker value; KRaft
// control records (types 2-6) may share a batch.
func checkControl(b *Batch, recs []Record) *batchCheck {
	for n := range recs {
		t, err := ParseControlKey(recs[n].Key)
		if err != nil {
			return fail("control", "record %d: %v", n, err)
		}
		if t != ControlAbort && t != ControlCommit {
			continue
		}
		if len(recs) != 1 {
			return fail("control", "%s marker in a control batch of %d records, want exactly 1", t, len(recs))
		}
		if !b.Transactional() {
			return fail("control", "%s marker in a non-transactional batch", t)
		}
		if _, err := ParseEndTxnMarker(recs[n].Value); err != nil {
			return fail("control", "record %d: %v", n, err)
		}
	}
	return nil
}

// DecodeRecords decodes the records of one magic-2 batch, b and raw as a
// Reader returns them (Batch, Raw), with the deep checks of Reader.Records
// (decompressing if needed), and calls fn for each record in order; fn
// returning false stops the walk. The records, and their Key, Value and
// Headers, are valid only during fn. It is for callers that hold a batch
// but not its Reader; a failed check is returned as a *CorruptionError
// (File empty) at the batch's position.
func DecodeRecords(b *Batch, raw []byte, fn func(r *Record) bool) error {
	if b.Magic != MagicV2 {
		return &CorruptionError{Pos: b.Pos, BaseOffset: b.BaseOffset, Check: "magic", Err: fmt.Errorf("magic %d batch: DecodeRecords reads magic 2 only", b.Magic)}
	}
	if len(raw) < V2HeaderSize || int64(len(raw)) != b.Size() {
		return &CorruptionError{Pos: b.Pos, BaseOffset: b.BaseOffset, Check: "length", Err: fmt.Errorf("%d raw bytes for a batch of %d", len(raw), b.Size())}
	}
	d := getDecoder(DefaultMaxDecompressedSize)
	defer putDecoder(d)
	recs, bc := d.decodeV2(b, raw)
	if bc != nil {
		return &CorruptionError{Pos: b.Pos, BaseOffset: b.BaseOffset, Check: bc.check, Err: bc.err}
	}
	for i := range recs {
		if !fn(&recs[i]) {
			break
		}
	}
	return nil
}

// errNoBatch is returned by Records when there is no current batch.
var errNoBatch = errors.New("segment: Records called without a current batch")
