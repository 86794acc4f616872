// Package index reads, checks, writes and rebuilds Kafka's side files: the
// offset, time and transaction indexes of a segment, producer-state
// snapshots, leader-epoch-checkpoint, partition.metadata, the log-dir offset
// checkpoints, meta.properties and KRaft snapshots.
//
// Like package segment it is pure format code: no logging, no goroutines, no
// policy. It walks .log files only through segment.Reader. Formats and the
// broker behaviour behind them are described in
// ../shared/docs/kafka-format.md (sections 1, 3, 4, 7-13), which cites the
// apache/kafka source behind each.
//
// # What to call
//
//   - VerifySegment: one pass over a .log checks its .index, .timeindex and
//     .txnindex, reports per file the layout (trimmed or zero-padded), the
//     writer rule each entry matches, whether the file is byte-identical to
//     a rebuild, notes, and corruption as *IndexError.
//   - Rebuild: the indexes Kafka >= 2.0 recovery (LogSegment.recover) would
//     write, byte for byte, plus the segment's aborted transactions and the
//     transactions left open for the next segment. CutLength gives the
//     prefix to keep for a point-in-time restore.
//   - ProducerState / BuildProducerSnapshot: ProducerStateManager replay,
//     for the .snapshot of a restored range.
//   - EpochCache, DeriveLeaderEpochs, EpochsFromSummaries, ClipLeaderEpochs:
//     LeaderEpochFileCache semantics for leader-epoch-checkpoint.
//   - VerifyKRaftSnapshot: <offset>-<epoch>.checkpoint and bootstrap.checkpoint.
//   - Parse*/Encode*/Format*/Decode* for each file on its own.
//
// # .index (OffsetIndex.java), big-endian, 8-byte entries
//
//	off  size field
//	0    4    relativeOffset   offset - segment base offset
//	4    4    position         byte position of a batch in the .log
//
// # .timeindex (TimeIndex.java), big-endian, 12-byte entries
//
//	off  size field
//	0    8    timestamp        max timestamp so far
//	8    4    relativeOffset   offset holding it - segment base offset
//
// Both are sparse, created preallocated to segment.index.bytes (zero-filled)
// and trimmed to entries*size at roll, close and recovery. Real entries end
// at the first slot i>0 whose relative offset is 0 (DumpLogSegments' rule);
// see Layout.
//
// # .txnindex (TransactionIndex.java, AbortedTxn.java), 34-byte entries
//
//	off  size field
//	0    2    version = 0
//	2    8    producerId
//	10   8    firstOffset       first offset of the aborted transaction
//	18   8    lastOffset        offset of its ABORT marker, in this segment
//	26   8    lastStableOffset
//
// No header, no CRC; the file exists only once a transaction aborted.
//
// # .snapshot (ProducerStateManager.java), big-endian
//
//	off  size field
//	0    2    version = 1
//	2    4    crc               CRC-32C over [6, end)
//	6    4    count
//	10   46*n producerId:int64 epoch:int16 lastSequence:int32 lastOffset:int64
//	          offsetDelta:int32 timestamp:int64 coordinatorEpoch:int32
//	          currentTxnFirstOffset:int64
//
// # Text files
//
// Checkpoints (CheckpointFile.java): "0\n<count>\n" then count lines,
// "epoch startOffset" (leader-epoch-checkpoint) or "topic partition offset"
// (log-dir checkpoints). partition.metadata: "version: 0\ntopic_id: <22
// chars>", no trailing newline. meta.properties: Java properties.
package index
