// Package brokersim is a simulated Kafka broker for tests and the demo: it
// writes a log dir laid out as a Kafka (KRaft, ≥ 3.8) leader broker lays it
// out, filled with record batches written by a real client.
//
// Data comes from a real client: an in-process franz-go kfake cluster
// receives the records from kgo producers (plain, idempotent or
// transactional with committed and aborted transactions; any codec), and
// the batches are fetched back raw with a FetchRequest. Their bytes are the
// producer's (CRCs included); only baseOffset (assigned by the cluster) and
// partitionLeaderEpoch (set on append, outside the CRC) are the broker's.
//
// Each fetched batch is then appended on its own, as a leader appends one
// produce request, applying Kafka's rules (see docs kafka-format.md §2-4,
// 7-10):
//
//   - <logdir>/<topic>-<partition>/ with 20-digit segment names; a segment
//     rolls when size > segment.bytes - batch size, or on Roll;
//   - the active segment's .index/.timeindex are sparse files preallocated
//     to 10485760/10485756 bytes (a new partition's first segment has them
//     at once, a rolled-to segment from its first append); a roll appends
//     the final time-index entry and trims both;
//   - an offset-index entry (lastOffset, position before the append) when
//     more than index.interval.bytes were appended since the last one, with
//     a time-index entry (max timestamp so far, last offset of its batch)
//     when that timestamp grew (the ≥ 3.8 batch-level rule);
//   - .txnindex created at the first aborted transaction in a segment;
//   - <newBase>.snapshot with the producer state at every roll;
//   - leader-epoch-checkpoint, partition.metadata, and at the root
//     meta.properties (v1) and the four offset checkpoints, written
//     tmp + rename.
//
// Live mode (Start) keeps producing on demand or in the background and
// simulates retention (DeleteOldestSegment), the log cleaner's swap
// (Compact), topic deletion and re-creation, and leader epoch changes.
//
// Not simulated: the KRaft metadata log (__cluster_metadata-0,
// bootstrap.checkpoint), followers, LogAppendTime, message formats v0/v1,
// producer-id expiration, and the cleaner's empty retained batches.
//
// The package writes only under Config.Dir. It is a test helper: it
// favours faithful files over speed, and never runs in the agent.
package brokersim
