package brokersim

import (
	"errors"
	"fmt"
	"time"

	"github.com/segvault/segvault/segment"
)

// Defaults applied by Config.withDefaults.
const (
	DefaultSegmentBytes       = 1 << 20 // far below Kafka's 1 GiB so tests get many segments
	DefaultIndexIntervalBytes = 4096    // index.interval.bytes
	DefaultRecords            = 1000
	DefaultValueBytes         = 100
	DefaultKeyBytes           = 16
	DefaultTxnBatches         = 2
	DefaultTimestampStep      = time.Millisecond
	// javaBatchSize is the Java producer's batch.size; the default batch
	// record count aims at it so batches look like a typical client's.
	javaBatchSize = 16384
	maxBatchCount = 500
)

// Index file sizes of a fresh (active) segment: segment.index.bytes
// (10485760) rounded down to a multiple of the entry size (AbstractIndex).
const (
	SegmentIndexBytes    = 10485760
	offsetEntrySize      = 8
	timeEntrySize        = 12
	txnEntrySize         = 34
	OffsetIndexAllocated = SegmentIndexBytes / offsetEntrySize * offsetEntrySize // 10485760
	TimeIndexAllocated   = SegmentIndexBytes / timeEntrySize * timeEntrySize     // 10485756
)

// Codecs accepted in TopicSpec.Codec.
var codecNames = map[string]segment.Codec{
	"": segment.CodecNone, "none": segment.CodecNone, "gzip": segment.CodecGzip,
	"snappy": segment.CodecSnappy, "lz4": segment.CodecLZ4, "zstd": segment.CodecZstd,
}

// Config describes the simulated broker: one log dir of a single-node KRaft
// cluster, and the topics it leads.
type Config struct {
	// Dir is the log dir (a log.dirs entry). It is created if missing and
	// must not hold partition directories already.
	Dir string
	// NodeID is node.id in meta.properties.
	NodeID int32
	// ClusterID is cluster.id; default: a random Kafka Uuid from Seed.
	ClusterID string
	// SegmentBytes is segment.bytes (default DefaultSegmentBytes).
	SegmentBytes int64
	// IndexIntervalBytes is index.interval.bytes (default 4096).
	IndexIntervalBytes int
	// FileDeleteDelay is file.delete.delay.ms: how long `.deleted` files and
	// `-delete` dirs stay before they are removed. Zero keeps them until
	// PurgeDeleted or Close, so tests can look at them.
	FileDeleteDelay time.Duration
	// StartTime is the timestamp of each topic's first initial record
	// (default: now minus the time the initial records span, so they end
	// around now). Records produced later (Append, RunProducer) carry the
	// wall-clock time kgo gives them.
	StartTime time.Time
	// Seed makes record contents, topic ids and the cluster id repeatable.
	// Offsets and batch boundaries with several producers per topic
	// depend on scheduling and are not.
	Seed int64
	// Sync fsyncs checkpoint files and their directory like Kafka does
	// (tmp, fsync, rename, fsync dir). Off by default: it only costs time
	// in tests, and the rename alone gives readers the same atomicity.
	Sync bool
	// ForgetRecords stops the broker from keeping every produced record
	// for Result (Append still returns them): for long demo runs.
	ForgetRecords bool
	// StepHook, if set, is called between the steps of Compact,
	// DeleteOldestSegment and DeleteTopic (e.g. "compact: cleaned written"),
	// with the partition locked, so tests can look at or damage the
	// intermediate state. It must not call back into the Broker.
	StepHook func(step string)
	// Topics are created and filled with their initial Records at start.
	Topics []TopicSpec
}

// TopicSpec describes a topic and how its producer writes.
type TopicSpec struct {
	Name       string
	Partitions int    // default 1
	Codec      string // none (default), gzip, snappy, lz4 or zstd
	// Idempotent selects kgo's default idempotent producer; false gives a
	// plain producer (producer id -1).
	Idempotent bool
	// Transactional writes every batch inside transactions (implies
	// idempotent). Each transaction holds TxnBatches rounds of batches.
	Transactional bool
	TxnBatches    int // default DefaultTxnBatches
	// AbortEvery aborts every n-th transaction (0: commit all).
	AbortEvery int
	// Producers is how many concurrent producers (kgo clients, each with
	// its own producer id and transactional id) write to the topic.
	Producers int // default 1
	// Records is how many records are produced at start.
	Records int
	// BatchRecords is the records per batch (default: about 16 KiB of
	// uncompressed records, like the Java producer's batch.size).
	BatchRecords int
	KeyBytes     int // default 16; negative means null keys
	ValueBytes   int // default 100; values are compressible JSON
	Headers      int // headers per record
	// KeySpace is the number of distinct keys per partition of a
	// Compacted topic (default Records/4, at least 16, so compaction has
	// work). Other topics get a unique key per record.
	KeySpace int
	// Compacted marks a cleanup.policy=compact topic: records always have
	// keys and Compact may be used on its partitions.
	Compacted bool
	// TombstoneEvery makes every n-th record of a compacted topic a
	// tombstone (null value).
	TombstoneEvery int
	// TimestampStep is the CreateTime distance between consecutive initial
	// records (default 1ms); TimestampJitter moves each one randomly by up
	// to ±jitter, so timestamps are not monotonic.
	TimestampStep   time.Duration
	TimestampJitter time.Duration
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.SegmentBytes <= 0 {
		out.SegmentBytes = DefaultSegmentBytes
	}
	if out.IndexIntervalBytes <= 0 {
		out.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	out.Topics = make([]TopicSpec, len(c.Topics))
	for i, t := range c.Topics {
		out.Topics[i] = t.withDefaults()
	}
	return out
}

func (t TopicSpec) withDefaults() TopicSpec {
	if t.Partitions <= 0 {
		t.Partitions = 1
	}
	if t.Producers <= 0 {
		t.Producers = 1
	}
	if t.TxnBatches <= 0 {
		t.TxnBatches = DefaultTxnBatches
	}
	if t.KeyBytes == 0 {
		t.KeyBytes = DefaultKeyBytes
	}
	if t.Compacted && t.KeyBytes < 0 {
		t.KeyBytes = DefaultKeyBytes
	}
	if t.ValueBytes <= 0 {
		t.ValueBytes = DefaultValueBytes
	}
	if t.BatchRecords <= 0 {
		per := max(t.KeyBytes, 0) + t.ValueBytes + 20 + t.Headers*30
		t.BatchRecords = min(max(javaBatchSize/per, 1), maxBatchCount)
	}
	if t.KeySpace <= 0 {
		t.KeySpace = max(t.Records/4, 16)
	}
	if t.TimestampStep <= 0 {
		t.TimestampStep = DefaultTimestampStep
	}
	if t.Transactional {
		t.Idempotent = true
	}
	return t
}

// Validate reports the first invalid option, naming it.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("brokersim: Config.Dir is empty")
	}
	if c.NodeID < 0 {
		return fmt.Errorf("brokersim: Config.NodeID %d is negative", c.NodeID)
	}
	if c.SegmentBytes < 0 {
		return fmt.Errorf("brokersim: Config.SegmentBytes %d is negative", c.SegmentBytes)
	}
	if c.SegmentBytes > 1<<31-1 {
		return fmt.Errorf("brokersim: Config.SegmentBytes %d exceeds 2^31-1 (index positions are int32)", c.SegmentBytes)
	}
	if c.IndexIntervalBytes < 0 {
		return fmt.Errorf("brokersim: Config.IndexIntervalBytes %d is negative", c.IndexIntervalBytes)
	}
	seen := map[string]bool{}
	for i, t := range c.Topics {
		if err := t.validate(); err != nil {
			return fmt.Errorf("brokersim: Config.Topics[%d]: %w", i, err)
		}
		if seen[t.Name] {
			return fmt.Errorf("brokersim: Config.Topics[%d]: duplicate topic %q", i, t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

func (t *TopicSpec) validate() error {
	if err := segment.ValidateTopic(t.Name); err != nil {
		return fmt.Errorf("topic name: %w", err)
	}
	if _, ok := codecNames[t.Codec]; !ok {
		return fmt.Errorf("codec %q is not one of none, gzip, snappy, lz4, zstd", t.Codec)
	}
	if t.Partitions < 0 || t.Partitions > 10000 {
		return fmt.Errorf("partitions %d out of range [0, 10000]", t.Partitions)
	}
	for name, v := range map[string]int{"Records": t.Records, "AbortEvery": t.AbortEvery, "Producers": t.Producers,
		"Headers": t.Headers, "TombstoneEvery": t.TombstoneEvery, "BatchRecords": t.BatchRecords,
		"TxnBatches": t.TxnBatches, "KeySpace": t.KeySpace, "ValueBytes": t.ValueBytes} {
		if v < 0 {
			return fmt.Errorf("%s %d is negative", name, v)
		}
	}
	if t.AbortEvery > 0 && !t.Transactional {
		return errors.New("AbortEvery needs Transactional")
	}
	if t.TombstoneEvery > 0 && !t.Compacted {
		return errors.New("TombstoneEvery needs Compacted")
	}
	if t.TimestampStep < 0 || t.TimestampJitter < 0 {
		return errors.New("TimestampStep and TimestampJitter must not be negative")
	}
	return nil
}
