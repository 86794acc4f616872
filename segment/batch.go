package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Sizes and offsets of the v2 batch header (DefaultRecordBatch.java).
const (
	LogOverhead         = 12 // baseOffset + batchLength
	V2HeaderSize        = 61 // RECORD_BATCH_OVERHEAD
	v2MinBatchLength    = V2HeaderSize - LogOverhead
	offPartitionEpoch   = 12
	offMagic            = 16
	offCRC              = 17
	offAttributes       = 21
	offLastOffsetDelta  = 23
	offBaseTimestamp    = 27
	offMaxTimestamp     = 35
	offProducerID       = 43
	offProducerEpoch    = 51
	offBaseSequence     = 53
	offRecordsCount     = 57
	NoTimestamp         = -1 // RecordBatch.NO_TIMESTAMP
	NoProducerID        = -1
	NoSequence          = -1
	attrCodecMask       = 0x07
	attrTimestampType   = 0x08
	attrTransactional   = 0x10
	attrControl         = 0x20
	attrDeleteHorizon   = 0x40
	maxKnownCodec       = CodecZstd
	DefaultMaxBatchSize = 64 << 20 // largest batch a Reader buffers; see ReaderOptions
)

// Magic values.
const (
	MagicV0 = 0
	MagicV1 = 1
	MagicV2 = 2
)

// castagnoli is the package's one CRC-32C table (hardware accelerated).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC-32C (Castagnoli) of b, as Kafka computes it.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Codec is a batch's compression type (attributes bits 0-2).
type Codec int8

// Codecs, by attribute value.
const (
	CodecNone Codec = iota
	CodecGzip
	CodecSnappy
	CodecLZ4
	CodecZstd
)

var codecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd"}

func (c Codec) String() string {
	if c >= 0 && int(c) < len(codecNames) {
		return codecNames[c]
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// Batch is a decoded batch header. For legacy (magic 0/1) entries the v2-only
// fields hold their "none" values (PartitionLeaderEpoch, ProducerID,
// ProducerEpoch, BaseSequence -1), Attributes keeps only the codec and (v1)
// timestamp-type bits, BaseTimestamp is the first record's timestamp and
// MaxTimestamp the message's (the wrapper's) timestamp; BaseOffset,
// LastOffsetDelta and RecordCount describe the records a (possibly
// compressed) wrapper holds (see Reader.Next).
type Batch struct {
	Pos                  int64 // file position of the batch's first byte
	BaseOffset           int64
	Length               int32 // batchLength field: bytes after it
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Size is the batch's total size in the file.
func (b *Batch) Size() int64 { return int64(b.Length) + LogOverhead }

// LastOffset is the offset of the batch's last record.
func (b *Batch) LastOffset() int64 { return b.BaseOffset + int64(b.LastOffsetDelta) }

// NextOffset is the offset after the batch.
func (b *Batch) NextOffset() int64 { return b.LastOffset() + 1 }

// Codec is the batch's compression codec.
func (b *Batch) Codec() Codec { return Codec(b.Attributes & attrCodecMask) }

// LogAppendTime reports whether timestamps are broker-assigned.
func (b *Batch) LogAppendTime() bool { return b.Attributes&attrTimestampType != 0 }

// Transactional reports the transactional attribute.
func (b *Batch) Transactional() bool { return b.Attributes&attrTransactional != 0 }

// Control reports the control-batch attribute (transaction markers, KRaft control records).
func (b *Batch) Control() bool { return b.Attributes&attrControl != 0 }

// HasDeleteHorizon reports KIP-534's attribute: BaseTimestamp is then the delete horizon.
func (b *Batch) HasDeleteHorizon() bool { return b.Attributes&attrDeleteHorizon != 0 }

// firstTimestamp is the timestamp a consumer sees on the batch's first
// record as far as the header tells: MaxTimestamp for LogAppendTime (the
// broker's time) and when BaseTimestamp is a delete horizon, BaseTimestamp
// otherwise; -1 for magic 0.
func (b *Batch) firstTimestamp() int64 {
	switch {
	case b.Magic == MagicV0:
		return NoTimestamp
	case b.LogAppendTime(), b.Magic == MagicV2 && b.HasDeleteHorizon(), b.BaseTimestamp < 0:
		return b.MaxTimestamp
	}
	return b.BaseTimestamp
}

// decodeV2Header fills b from the first V2HeaderSize bytes of p.
func (b *Batch) decodeV2Header(p []byte) {
	_ = p[V2HeaderSize-1]
	be := binary.BigEndian
	b.BaseOffset = int64(be.Uint64(p))
	b.Length = int32(be.Uint32(p[8:]))
	b.PartitionLeaderEpoch = int32(be.Uint32(p[offPartitionEpoch:]))
	b.Magic = int8(p[offMagic])
	b.CRC = be.Uint32(p[offCRC:])
	b.Attributes = int16(be.Uint16(p[offAttributes:]))
	b.LastOffsetDelta = int32(be.Uint32(p[offLastOffsetDelta:]))
	b.BaseTimestamp = int64(be.Uint64(p[offBaseTimestamp:]))
	b.MaxTimestamp = int64(be.Uint64(p[offMaxTimestamp:]))
	b.ProducerID = int64(be.Uint64(p[offProducerID:]))
	b.ProducerEpoch = int16(be.Uint16(p[offProducerEpoch:]))
	b.BaseSequence = int32(be.Uint32(p[offBaseSequence:]))
	b.RecordCount = int32(be.Uint32(p[offRecordsCount:]))
}

// checkV2 runs the shallow checks that need only the header and the raw
// batch bytes. It returns the failed check's name and detail.
func (b *Batch) checkV2(raw []byte) (string, error) {
	if c := CRC32C(raw[offAttributes:]); c != b.CRC {
		return "crc", fmt.Errorf("crc mismatch: stored %08x, computed %08x", b.CRC, c)
	}
	if b.Codec() > maxKnownCodec {
		return "attributes", fmt.Errorf("unknown compression codec %d", b.Codec())
	}
	if b.LastOffsetDelta < 0 {
		return "last offset delta", fmt.Errorf("negative last offset delta %d", b.LastOffsetDelta)
	}
	if b.RecordCount < 0 {
		return "record count", fmt.Errorf("negative record count %d", b.RecordCount)
	}
	if int64(b.RecordCount) > int64(b.LastOffsetDelta)+1 {
		return "record count", fmt.Errorf("%d records in an offset range of %d", b.RecordCount, int64(b.LastOffsetDelta)+1)
	}
	if b.BaseOffset < 0 || b.LastOffset() < b.BaseOffset {
		return "offset", fmt.Errorf("offset range %d..%d out of bounds", b.BaseOffset, b.LastOffset())
	}
	if b.MaxTimestamp < NoTimestamp || (!b.HasDeleteHorizon() && b.BaseTimestamp < NoTimestamp) {
		return "timestamp", fmt.Errorf("invalid timestamps base %d max %d", b.BaseTimestamp, b.MaxTimestamp)
	}
	if b.ProducerID < NoProducerID {
		return "producer id", fmt.Errorf("invalid producer id %d", b.ProducerID)
	}
	if b.Transactional() && (b.ProducerID < 0 || b.ProducerEpoch < 0) {
		return "producer id", fmt.Errorf("transactional batch without producer id/epoch (%d/%d)", b.ProducerID, b.ProducerEpoch)
	}
	if b.BaseSequence < NoSequence && b.ProducerID >= 0 {
		return "sequence", fmt.Errorf("invalid base sequence %d", b.BaseSequence)
	}
	return "", nil
}
