package segment

import "encoding/binary"

// txnMarkerRecordSize is the size of a transaction marker's one record
// after its length varint: attributes, timestamp delta, offset delta, key
// length, key (version:int16 type:int16), value length, value
// (version:int16 coordinatorEpoch:int32), header count.
const txnMarkerRecordSize = 1 + 1 + 1 + 1 + 4 + 1 + 6 + 1

// TxnMarkerBatchSize is the size of the batch AppendTxnMarker writes.
const TxnMarkerBatchSize = V2HeaderSize + 1 + txnMarkerRecordSize

// AppendTxnMarker appends to dst a v2 control batch holding one COMMIT or
// ABORT marker (m.Commit) as the transaction coordinator writes it
// (kafka-format.md §13; EndTransactionMarker.java): offset m.Offset,
// producer m.ProducerID/m.Epoch, base sequence -1, attributes
// transactional|control, CreateTime timestamp (base and max), key
// version 0 + type, value version 0 + m.CoordinatorEpoch, no headers, and
// the CRC-32C over attributes..end. A Reader reads it back as one batch
// whose Records pass the deep checks and whose Summary lists m.
func AppendTxnMarker(dst []byte, m TxnMarker, leaderEpoch int32, timestamp int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, TxnMarkerBatchSize)...)
	b := dst[start:]
	be := binary.BigEndian
	be.PutUint64(b[0:], uint64(m.Offset))
	be.PutUint32(b[8:], uint32(TxnMarkerBatchSize-LogOverhead))
	be.PutUint32(b[offPartitionEpoch:], uint32(leaderEpoch))
	b[offMagic] = MagicV2
	be.PutUint16(b[offAttributes:], attrTransactional|attrControl)
	be.PutUint32(b[offLastOffsetDelta:], 0)
	be.PutUint64(b[offBaseTimestamp:], uint64(timestamp))
	be.PutUint64(b[offMaxTimestamp:], uint64(timestamp))
	be.PutUint64(b[offProducerID:], uint64(m.ProducerID))
	be.PutUint16(b[offProducerEpoch:], uint16(m.Epoch))
	be.PutUint32(b[offBaseSequence:], uint32(0xffffffff)) // NoSequence
	be.PutUint32(b[offRecordsCount:], 1)
	typ := ControlAbort
	if m.Commit {
		typ = ControlCommit
	}
	rec := b[V2HeaderSize:]
	rec[0] = txnMarkerRecordSize << 1 // zigzag varint length
	// rec[1..3]: attributes, timestamp delta, offset delta: all 0
	rec[4] = 4 << 1 // key length
	be.PutUint16(rec[5:], 0)
	be.PutUint16(rec[7:], uint16(typ))
	rec[9] = 6 << 1 // value length
	be.PutUint16(rec[10:], 0)
	be.PutUint32(rec[12:], uint32(m.CoordinatorEpoch))
	rec[16] = 0 // header count
	be.PutUint32(b[offCRC:], CRC32C(b[offAttributes:]))
	return dst
}
