package brokersim

// Result is what the simulated broker holds: every record a producer wrote,
// with the offset the cluster assigned it, per partition.
type Result struct {
	Dir         string
	ClusterID   string
	DirectoryID string
	NodeID      int32
	Topics      []TopicResult
}

// TopicResult is one topic. ID is the topic id in every partition.metadata.
type TopicResult struct {
	Name       string
	ID         string
	Spec       TopicSpec // with defaults applied
	Partitions []PartitionResult
}

// PartitionResult is one partition's log.
type PartitionResult struct {
	Topic     string
	Partition int32
	Dir       string // absolute partition directory
	// Records are the data records in offset order, aborted ones included
	// (Aborted set). Offsets not listed are transaction markers. Records
	// stay listed after retention or compaction removed them from disk;
	// compare against LogStartOffset and the segment files as needed.
	Records        []Record
	LogStartOffset int64   // base offset of the first segment
	LogEndOffset   int64   // next offset to be written
	Segments       []int64 // base offsets of the segments on disk; the last is active
	Markers        int     // transaction markers written
	AbortedTxns    int     // aborted transactions (entries in .txnindex files)
}

// Record is one produced record as the producer sent it.
type Record struct {
	Partition     int32
	Offset        int64
	Key           []byte // nil for a null key
	Value         []byte // nil for a tombstone
	Headers       []Header
	Timestamp     int64 // CreateTime, Unix milliseconds
	ProducerID    int64 // -1 for a plain producer
	ProducerEpoch int16
	Transactional bool
	Aborted       bool // its transaction was aborted
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Topic returns the named topic's result, or nil.
func (r *Result) Topic(name string) *TopicResult {
	for i := range r.Topics {
		if r.Topics[i].Name == name {
			return &r.Topics[i]
		}
	}
	return nil
}

// Partition returns one partition's result, or nil.
func (r *Result) Partition(topic string, partition int32) *PartitionResult {
	t := r.Topic(topic)
	if t == nil || partition < 0 || int(partition) >= len(t.Partitions) {
		return nil
	}
	return &t.Partitions[partition]
}
