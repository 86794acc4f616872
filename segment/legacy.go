package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Legacy (magic 0 and 1) message layout (LegacyRecord.java), big-endian:
//
//	off  size field
//	0    8    offset          absolute; for a compressed wrapper, the last inner offset
//	8    4    messageSize     bytes after this field
//	12   4    crc             CRC-32 (IEEE) over [16, 12+messageSize)
//	16   1    magic           0 or 1
//	17   1    attributes      bits 0-2 codec (0-3), bit 3 timestamp type (v1)
//	18   8    timestamp       v1 only
//	..   4    keyLength       -1 = null
//	..   ..   key
//	..   4    valueLength     -1 = null
//	..   ..   value           for a compressed wrapper: the compressed inner log entries
const (
	legacyOffCRC      = 12
	legacyOffAttr     = 17
	legacyOffTS       = 18
	legacyMinSizeV0   = 14 // crc + magic + attributes + keyLength + valueLength
	legacyMinSizeV1   = legacyMinSizeV0 + 8
	legacyAttrMaskV0  = attrCodecMask
	legacyAttrMaskV1  = attrCodecMask | attrTimestampType
	maxLegacyCodec    = CodecLZ4 // zstd needs magic 2
	legacyKeyOffsetV0 = 18
	legacyKeyOffsetV1 = 26
)

// ieee is the CRC-32 table legacy messages use (java.util.zip.CRC32).
var ieee = crc32.IEEETable

func legacyMinSize(magic int8) int32 {
	if magic == MagicV0 {
		return legacyMinSizeV0
	}
	return legacyMinSizeV1
}

// legacyMessage is one parsed legacy message (outer or inner).
type legacyMessage struct {
	offset     int64
	magic      int8
	attributes int8
	timestamp  int64
	key, value []byte
	crc        uint32
}

// parseLegacy checks and parses one log entry that fills e exactly
// (offset, size, message). It returns the failed check and detail.
func parseLegacy(e []byte, m *legacyMessage) (string, error) {
	be := binary.BigEndian
	m.offset = int64(be.Uint64(e))
	m.crc = be.Uint32(e[legacyOffCRC:])
	if c := crc32.Checksum(e[offMagic:], ieee); c != m.crc {
		return "crc", fmt.Errorf("crc mismatch: stored %08x, computed %08x", m.crc, c)
	}
	m.magic = int8(e[offMagic])
	m.attributes = int8(e[legacyOffAttr])
	if Codec(m.attributes&attrCodecMask) > maxLegacyCodec {
		return "attributes", fmt.Errorf("compression codec %d not allowed with magic %d", m.attributes&attrCodecMask, m.magic)
	}
	k := legacyKeyOffsetV0
	m.timestamp = NoTimestamp
	if m.magic == MagicV1 {
		k = legacyKeyOffsetV1
		m.timestamp = int64(be.Uint64(e[legacyOffTS:]))
		if m.timestamp < NoTimestamp {
			return "timestamp", fmt.Errorf("invalid timestamp %d", m.timestamp)
		}
	}
	var err error
	if m.key, k, err = legacyBytes(e, k, "key"); err != nil {
		return "length", err
	}
	if m.value, k, err = legacyBytes(e, k, "value"); err != nil {
		return "length", err
	}
	if k != len(e) {
		return "length", fmt.Errorf("message size %d but key and value end %d bytes earlier", len(e)-LogOverhead, len(e)-k)
	}
	return "", nil
}

// legacyBytes reads an int32 length (-1 = null) at e[k:] and the bytes after it.
func legacyBytes(e []byte, k int, name string) ([]byte, int, error) {
	if len(e)-k < 4 {
		return nil, k, fmt.Errorf("%s length field at message byte %d runs past the message", name, k-LogOverhead)
	}
	n := int32(binary.BigEndian.Uint32(e[k:]))
	if n == -1 {
		return nil, k + 4, nil
	}
	if n < -1 || int(n) > len(e)-k-4 {
		return nil, k, fmt.Errorf("%s length %d with %d bytes left in the message", name, n, len(e)-k-4)
	}
	return e[k+4 : k+4+int(n) : k+4+int(n)], k + 4 + int(n), nil
}

// nextLegacy reads a magic 0/1 log entry as one Batch. A compressed wrapper
// is opened at once, whatever the depth: its first offset and record count
// exist only inside it (Kafka's AbstractLegacyRecordBatch.baseOffset also
// decompresses), and restore planning needs them. So for every legacy entry
// BaseOffset is the first inner offset, LastOffset the wrapper offset and
// RecordCount the number of inner messages (1 for a plain message).
func (r *Reader) nextLegacy(pos, base int64, length int32, magic int8, remaining int64) bool {
	if minSize := legacyMinSize(magic); length < minSize {
		return r.fail(pos, base, "length", fmt.Errorf("message size %d below the minimum %d for magic %d", length, minSize, magic))
	}
	total := int64(length) + LogOverhead
	if total > remaining {
		return r.fail(pos, base, "length", fmt.Errorf("message size %d runs past the end of the file (%d bytes left): %w", length, remaining, ErrTruncated))
	}
	if total > int64(r.opts.MaxBatchSize) {
		return r.fail(pos, base, "length", fmt.Errorf("message of %d bytes exceeds the %d-byte limit", total, r.opts.MaxBatchSize))
	}
	if err := r.fill(int(total)); err != nil {
		return r.ioFail(pos, err)
	}
	raw := r.buf[r.lo : r.lo+int(total)]
	var m legacyMessage
	if check, err := parseLegacy(raw, &m); err != nil {
		return r.fail(pos, base, check, err)
	}
	b := &r.batch
	mask := int8(legacyAttrMaskV0)
	if magic == MagicV1 {
		mask = legacyAttrMaskV1
	}
	*b = Batch{Pos: pos, BaseOffset: m.offset, Length: length, PartitionLeaderEpoch: -1, Magic: magic, CRC: m.crc,
		Attributes: int16(m.attributes & mask), BaseTimestamp: m.timestamp, MaxTimestamp: m.timestamp,
		ProducerID: NoProducerID, ProducerEpoch: -1, BaseSequence: NoSequence, RecordCount: 1}
	if b.Codec() != CodecNone {
		if m.value == nil {
			return r.fail(pos, base, "attributes", fmt.Errorf("compressed (%s) wrapper message with a null value", b.Codec()))
		}
		recs, bc := r.decoder().decodeLegacyWrapper(b, &m)
		if bc != nil {
			return r.fail(pos, base, bc.check, bc.err)
		}
		r.recs, r.recsOK = recs, true
	} else if m.offset < 0 {
		return r.fail(pos, base, "offset", fmt.Errorf("negative offset %d", m.offset))
	}
	if !r.checkOrder(pos, b) {
		return false
	}
	r.raw = raw
	r.legacy = m
	r.n++
	return true
}

// decodeLegacyWrapper decompresses a wrapper's value, checks every inner
// message (own CRC, same magic, not compressed, increasing offsets) and
// completes b: BaseOffset becomes the first inner offset and RecordCount the
// inner count. v0 inner offsets are absolute and the last must equal the
// wrapper's; v1 inner offsets are relative, made absolute by
// wrapperOffset - lastInner + inner. For v1 CreateTime the wrapper timestamp
// must be the largest inner timestamp, which is what the broker writes.
func (d *recordDecoder) decodeLegacyWrapper(b *Batch, w *legacyMessage) ([]Record, *batchCheck) {
	data, err := d.decompress(b.Codec(), w.value, b.Magic == MagicV0 && b.Codec() == CodecLZ4)
	if err != nil {
		return nil, &batchCheck{check: "decompress", err: err}
	}
	recs := d.recs[:0]
	defer func() { d.recs = recs[:0] }()
	logAppend := b.LogAppendTime()
	maxTS := int64(math.MinInt64)
	var m legacyMessage
	prev := int64(math.MinInt64)
	for i, n := 0, 0; i < len(data); n++ {
		if len(data)-i < offMagic+1 {
			return nil, fail("inner message", "inner message %d at decompressed byte %d: %d bytes left, too few for a header", n, i, len(data)-i)
		}
		size := int32(binary.BigEndian.Uint32(data[i+8:]))
		if inMagic := int8(data[i+offMagic]); inMagic != b.Magic {
			return nil, fail("inner message", "inner message %d at decompressed byte %d: magic %d inside a magic %d wrapper", n, i, inMagic, b.Magic)
		}
		if size < legacyMinSize(b.Magic) || int64(size) > int64(len(data)-i-LogOverhead) {
			return nil, fail("inner message", "inner message %d at decompressed byte %d: message size %d with %d bytes left", n, i, size, len(data)-i-LogOverhead)
		}
		e := data[i : i+LogOverhead+int(size)]
		if check, err := parseLegacy(e, &m); err != nil {
			return nil, fail("inner message", "inner message %d at decompressed byte %d: %s: %v", n, i, check, err)
		}
		if m.attributes&attrCodecMask != 0 {
			return nil, fail("inner message", "inner message %d at decompressed byte %d: nested compression (codec %d)", n, i, m.attributes&attrCodecMask)
		}
		if m.offset <= prev || m.offset < 0 {
			return nil, fail("offset", "inner message %d at decompressed byte %d: offset %d not above the previous %d", n, i, m.offset, max(prev, -1))
		}
		prev = m.offset
		maxTS = max(maxTS, m.timestamp)
		ts := m.timestamp
		if logAppend {
			ts = w.timestamp
		}
		recs = append(recs, Record{Offset: m.offset, Timestamp: ts, Attributes: m.attributes, Key: m.key, Value: m.value})
		i += len(e)
	}
	if len(recs) == 0 {
		return nil, fail("inner message", "compressed wrapper holds no messages")
	}
	last := recs[len(recs)-1].Offset
	if b.Magic == MagicV0 {
		if last != w.offset {
			return nil, fail("offset", "last inner offset %d differs from the wrapper offset %d", last, w.offset)
		}
	} else {
		shift := w.offset - last
		if shift < 0 {
			return nil, fail("offset", "wrapper offset %d below the last relative inner offset %d", w.offset, last)
		}
		for n := range recs {
			recs[n].Offset += shift
		}
		if !logAppend && maxTS != w.timestamp {
			return nil, fail("timestamp", "wrapper timestamp %d, largest inner timestamp %d", w.timestamp, maxTS)
		}
	}
	first := recs[0].Offset
	if w.offset-first > math.MaxInt32 {
		return nil, fail("offset", "inner offsets %d..%d span more than 2^31", first, w.offset)
	}
	b.BaseOffset = first
	b.LastOffsetDelta = int32(w.offset - first)
	b.RecordCount = int32(len(recs))
	b.BaseTimestamp = recs[0].Timestamp
	return recs, nil
}

// legacyRecord returns the current uncompressed legacy message as a record.
func (r *Reader) legacyRecord() []Record {
	m := &r.legacy
	r.one[0] = Record{Offset: m.offset, Timestamp: m.timestamp, Attributes: m.attributes, Key: m.key, Value: m.value}
	return r.one[:]
}
