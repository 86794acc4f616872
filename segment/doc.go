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
// Source: apache/kafka clients/.../record/DefaultRecordBatch.java. See
// ../shared/docs/kafka-format.md §13 and §14 for the legacy formats.
package segment
