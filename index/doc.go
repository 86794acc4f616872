// Package index reads, checks, writes and rebuilds Kafka's side files: the
// offset, time and transaction indexes of a segment, producer-state
// snapshots, leader-epoch-checkpoint, partition.metadata, the log-dir offset
// checkpoints and meta.properties.
//
// Like package segment it is pure format code: no logging, no goroutines, no
// policy. Formats and their exact bytes are described in
// ../shared/docs/kafka-format.md (sections 1, 3, 4, 7-10), which cites the
// apache/kafka source behind each.
package index
