// Package segment reads and validates Kafka log segment files offline.
//
// It is pure format code: it parses file names, iterates record batches
// (magic 2, and legacy magic 0/1 message sets), checks lengths, CRCs, offsets
// and timestamps, decompresses and parses records when asked to, and
// summarises a segment for the archive manifest. It never logs, never starts
// goroutines and never decides policy: callers decide what an error means.
//
// # Record batch v2 (magic 2), big-endian
//
//	off  size field
//	0    8    baseOffset
//	8    4    batchLength            bytes after this field (total size - 12)
//	12   4    partitionLeaderEpoch   NOT covered by the CRC
//	16   1    magic = 2
//	17   4    crc                    CRC-32C over [21, 12+batchLength)
//	21   2    attributes             bits 0-2 codec, 3 timestamp type, 4 transactional,
//	                                 5 control, 6 delete horizon
//	23   4    lastOffsetDelta
//	27   8    baseTimestamp
//	35   8    maxTimestamp
//	43   8    producerId
//	51   2    producerEpoch
//	53   4    baseSequence
//	57   4    recordsCount
//	61   ...  records (compressed as a whole when codec != 0)
//
//	record: length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
//	        keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
//	        headerCount varint | (headerKeyLength varint | headerKey | headerValueLength varint | headerValue)*
//
// Varints are zigzag-encoded (Kafka's ByteUtils). Source: apache/kafka
// clients/.../record/DefaultRecordBatch.java and DefaultRecord.java.
//
// Neither baseOffset nor partitionLeaderEpoch is covered by the CRC: the
// broker rewrites both in place. A flipped epoch therefore goes unnoticed
// (only the Summary's leader epochs change), and a flipped baseOffset is
// caught only when it breaks offset order with a neighbouring batch or the
// segment's base offset; a side index (.index) is the only other witness.
//
// # Legacy message sets (magic 0 and 1)
//
// Each log entry is offset:int64 | messageSize:int32 | message, the message
// being crc:uint32 | magic | attributes | [timestamp:int64, v1] |
// keyLength:int32 key | valueLength:int32 value, with a CRC-32 (IEEE) over
// magic..end (diagram in legacy.go). A compressed wrapper's value holds the
// compressed inner entries: absolute offsets in v0, relative in v1
// (absolute = wrapperOffset - lastInner + inner). Magic 0 LZ4 frames carry
// Kafka's old, wrong header checksum (KAFKA-3160), which is ignored as Kafka
// does. The Reader returns each log entry as one Batch with the v2-only
// fields at their "none" values; see Reader.Next for how wrappers are
// opened. See ../shared/docs/kafka-format.md §13 and §14.
//
// # Codecs
//
// gzip (RFC 1952), snappy (xerial framing: magic 82 53 4E 41 50 50 59 00,
// version and compat int32s, then [int32 length][snappy block]*, or a plain
// snappy block as snappy-java also accepts), lz4 (frame format) and zstd.
// Decompression is capped by ReaderOptions.MaxDecompressedSize: a bomb fails
// with a "decompress" CorruptionError once the output passes the cap.
//
// # Checks
//
// Shallow (Reader.Next, no allocation per batch): framing, magic, length,
// CRC, attributes, offset range and order, timestamps and producer fields of
// the header. Deep (Reader.Records, ScanOptions.Deep), per record: exact
// record lengths, null (-1) or non-negative key/value/header lengths, record
// count equal to recordsCount with no bytes left over, offset deltas rising
// strictly within [0, lastOffsetDelta] (a batch with fewer records than its
// offset range, which only the log cleaner writes, may have gaps; one with
// as many must use every delta), baseTimestamp + delta within int64, and for
// CreateTime batches the largest record timestamp equal to maxTimestamp.
// Control batches: keys version:int16 type:int16; a COMMIT/ABORT marker is
// the only record of a transactional batch and its value is
// version:int16 coordinatorEpoch:int32; KRaft types 2-6 are accepted.
//
// # Reading records
//
// Reader.Records decodes the current batch (the same deep checks) and
// returns its records; each Record's Key, Value and Headers alias the
// Reader's buffers and are valid until the next Next or Records call:
//
//	r := segment.NewReader(f, size, path, segment.ReaderOptions{BaseOffset: base})
//	for r.Next() {
//		b := r.Batch()
//		recs, err := r.Records()
//		if err != nil {
//			break // also in r.Err()
//		}
//		for _, rec := range recs {
//			if b.Control() {
//				t, _ := segment.ParseControlKey(rec.Key) // COMMIT, ABORT, KRaft types
//				_ = t
//			}
//			fmt.Println(rec.Offset, rec.Timestamp, rec.Key, rec.Value, rec.Headers)
//		}
//	}
//	if err := r.Err(); err != nil { ... }
//
// Every failure is a *CorruptionError naming the file, the batch's byte
// position, its base offset and the check; record-level detail such as
// "record 3 at batch byte 120: key length -5" is in the message. A file that
// ends inside a batch wraps ErrTruncated.
package segment
