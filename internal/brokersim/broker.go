package brokersim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

// ErrUnknownTopic is returned for a topic the broker does not have.
var ErrUnknownTopic = errors.New("brokersim: unknown topic")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("brokersim: broker closed")

const (
	fetchMaxBytes = 64 << 20
	lockFile      = ".lock"
)

// Broker is a running simulated broker. Its methods are safe for
// concurrent use; the active segments keep being written while they run.
type Broker struct {
	cfg     Config
	lcfg    logConfig
	cluster *kfake.Cluster
	client  *kgo.Client // fetches and admin requests
	adm     *kadm.Client
	dirID   string

	mu       sync.Mutex // guards topics, creating, rng, closed, loops
	rng      *rand.Rand
	topics   map[string]*topic
	creating map[string]bool
	closed   bool
	loops    []*loop

	ckMu          sync.Mutex // serialises root checkpoint writes
	cleanerWrites bool       // cleaner-offset-checkpoint has been written once

	delMu   sync.Mutex
	pending map[*pendingDelete]struct{}
}

type pendingDelete struct {
	paths []string
	timer *time.Timer
}

type topic struct {
	spec  TopicSpec
	id    string     // topic id written to partition.metadata
	kid   [16]byte   // the kfake cluster's topic id, for fetches
	parts []*partLog // by partition number

	prodMu  sync.Mutex // serialises producing, guards everything below
	prods   []*kgo.Client
	gen     *recordGen
	txnSeq  int
	deleted bool
}

// Generate starts a simulated broker, produces every topic's Records, and
// stops it, leaving the log dir as a running broker has it (active segments
// with preallocated indexes, checkpoints written). It returns what was
// produced.
func Generate(ctx context.Context, cfg Config) (*Result, error) {
	b, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := b.Result()
	if err := b.Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// Start creates the log dir, starts an in-process kfake cluster, creates the
// configured topics and produces their initial Records.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("brokersim: log dir: %w", err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("brokersim: create log dir: %w", err)
	}
	b := &Broker{cfg: cfg, topics: map[string]*topic{}, creating: map[string]bool{}, pending: map[*pendingDelete]struct{}{},
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5e6fa017))}
	if b.cfg.ClusterID == "" {
		b.cfg.ClusterID = kafkaUUID(b.rng)
	}
	b.dirID = kafkaUUID(b.rng)
	b.lcfg = logConfig{segmentBytes: cfg.SegmentBytes, indexInterval: int64(cfg.IndexIntervalBytes), sync: cfg.Sync,
		forgetRecords: cfg.ForgetRecords, step: cfg.StepHook, scheduleDelete: b.scheduleDelete}
	// The log dir lock file (LogManager.lockLogDirs): 0 bytes, left behind.
	if err := os.WriteFile(filepath.Join(dir, lockFile), nil, 0o644); err != nil {
		return nil, fmt.Errorf("brokersim: %w", err)
	}

	mp := &index.MetaProperties{Version: 1, NodeID: cfg.NodeID, ClusterID: b.cfg.ClusterID, DirectoryID: b.dirID}
	date := time.Now().Format("Mon Jan 02 15:04:05 MST 2006") // java.util.Date.toString
	if err := writeAtomic(filepath.Join(dir, index.MetaPropertiesFile), index.FormatMetaProperties(mp, date), cfg.Sync); err != nil {
		return nil, fmt.Errorf("brokersim: %w", err)
	}
	b.cluster, err = kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("brokersim: start kfake: %w", err)
	}
	b.client, err = kgo.NewClient(kgo.SeedBrokers(b.cluster.ListenAddrs()...))
	if err != nil {
		b.cluster.Close()
		return nil, fmt.Errorf("brokersim: client: %w", err)
	}
	b.adm = kadm.NewClient(b.client)
	for _, spec := range cfg.Topics {
		if err := b.createTopic(ctx, spec); err != nil {
			return nil, errors.Join(err, b.Close())
		}
	}
	if err := b.writeRootCheckpoints(); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

// Dir is the absolute log dir.
func (b *Broker) Dir() string { return b.cfg.Dir }

// Result returns what the broker holds now.
func (b *Broker) Result() *Result {
	b.mu.Lock()
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	ts := make([]*topic, 0, len(names))
	sort.Strings(names)
	for _, n := range names {
		ts = append(ts, b.topics[n])
	}
	b.mu.Unlock()
	r := &Result{Dir: b.cfg.Dir, ClusterID: b.cfg.ClusterID, DirectoryID: b.dirID, NodeID: b.cfg.NodeID}
	for _, t := range ts {
		tr := TopicResult{Name: t.spec.Name, ID: t.id, Spec: t.spec}
		for _, p := range t.parts {
			p.mu.Lock()
			tr.Partitions = append(tr.Partitions, p.result())
			p.mu.Unlock()
		}
		r.Topics = append(r.Topics, tr)
	}
	return r
}

func (b *Broker) topic(name string) (*topic, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	t := b.topics[name]
	if t == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownTopic, name)
	}
	return t, nil
}

func (b *Broker) part(name string, partition int32) (*partLog, error) {
	t, err := b.topic(name)
	if err != nil {
		return nil, err
	}
	if partition < 0 || int(partition) >= len(t.parts) {
		return nil, fmt.Errorf("%w partition %s-%d", ErrUnknownTopic, name, partition)
	}
	return t.parts[partition], nil
}

// CreateTopic creates a topic with a new topic id and produces its initial
// Records. A topic of the same name may have been deleted before; its
// `-delete` dirs may still be there.
func (b *Broker) CreateTopic(ctx context.Context, spec TopicSpec) error {
	if err := spec.validate(); err != nil {
		return fmt.Errorf("brokersim: %w", err)
	}
	if err := b.createTopic(ctx, spec.withDefaults()); err != nil {
		return err
	}
	return b.writeRootCheckpoints()
}

func (b *Broker) createTopic(ctx context.Context, spec TopicSpec) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if b.topics[spec.Name] != nil || b.creating[spec.Name] {
		b.mu.Unlock()
		return fmt.Errorf("brokersim: topic %q exists", spec.Name)
	}
	b.creating[spec.Name] = true
	t := &topic{spec: spec, id: kafkaUUID(b.rng)}
	seed := b.rng.Uint64()
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.creating, spec.Name)
		b.mu.Unlock()
	}()
	// Build the topic completely before others can see it: t.parts is
	// immutable once the topic is in b.topics.
	t.prodMu.Lock()
	defer t.prodMu.Unlock()
	fail := func(err error) error {
		b.mu.Lock()
		if b.topics[spec.Name] == t {
			delete(b.topics, spec.Name)
		}
		b.mu.Unlock()
		t.closeProducers()
		for _, p := range t.parts {
			p.mu.Lock()
			_ = p.close()
			p.mu.Unlock()
		}
		return err
	}
	resp, err := b.adm.CreateTopic(ctx, int32(spec.Partitions), 1, nil, spec.Name)
	if err != nil {
		return fail(fmt.Errorf("brokersim: create topic %s: %w", spec.Name, err))
	}
	t.kid = resp.ID
	for i := 0; i < spec.Partitions; i++ {
		p, err := newPartLog(&b.lcfg, b.cfg.Dir, spec.Name, int32(i), t.id, 0)
		if err != nil {
			return fail(fmt.Errorf("brokersim: %w", err))
		}
		t.parts = append(t.parts, p)
	}
	start := b.cfg.StartTime
	if start.IsZero() {
		start = time.Now().Add(-time.Duration(spec.Records) * spec.TimestampStep)
	}
	t.gen = newRecordGen(spec, seed, start)
	if err := t.openProducers(b.cluster.ListenAddrs()); err != nil {
		return fail(err)
	}
	b.mu.Lock()
	b.topics[spec.Name] = t
	b.mu.Unlock()
	if spec.Records > 0 {
		if _, err := b.appendLocked(ctx, t, spec.Records, false); err != nil {
			return fail(err)
		}
	}
	return nil
}

// Append produces n more records to the topic, spread over its partitions,
// writes the resulting batches to the log, rolling as needed, and updates
// the root checkpoints. It returns the records with their offsets.
func (b *Broker) Append(ctx context.Context, topicName string, n int) ([]Record, error) {
	t, err := b.topic(topicName)
	if err != nil {
		return nil, err
	}
	t.prodMu.Lock()
	defer t.prodMu.Unlock()
	if t.deleted {
		return nil, fmt.Errorf("%w %q", ErrUnknownTopic, topicName)
	}
	recs, err := b.appendLocked(ctx, t, n, true)
	// Kafka writes these every few seconds; writing them per Append keeps
	// them current for tests without a timer.
	return recs, errors.Join(err, b.writeRootCheckpoints())
}

func (b *Broker) appendLocked(ctx context.Context, t *topic, n int, live bool) ([]Record, error) {
	recs, err := t.produce(ctx, n, live)
	// Whatever was produced is in the cluster: bring the log up to date
	// even after an error, so the files match the cluster.
	var serr error
	byPart := make([][]Record, len(t.parts))
	for _, r := range recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	for i, p := range t.parts {
		if e := b.syncPartition(ctx, t, p, byPart[i]); e != nil && serr == nil {
			serr = e
		}
	}
	if err = errors.Join(err, serr); err != nil {
		return nil, fmt.Errorf("brokersim: append to %s: %w", t.spec.Name, err)
	}
	return recs, nil
}

// syncPartition fetches every batch past the partition's log end from the
// cluster and appends them one by one, then records what was produced.
func (b *Broker) syncPartition(ctx context.Context, t *topic, p *partLog, produced []Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("partition closed")
	}
	defer p.addRecords(produced)
	for {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxBytes = fetchMaxBytes
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = t.spec.Name, t.kid
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p.part, p.leo, fetchMaxBytes
		rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, b.client)
		if err != nil {
			return fmt.Errorf("fetch %s-%d: %w", t.spec.Name, p.part, err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return fmt.Errorf("fetch %s-%d: %w", t.spec.Name, p.part, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return fmt.Errorf("fetch %s-%d: unexpected response shape", t.spec.Name, p.part)
		}
		fp := &resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(fp.ErrorCode); err != nil {
			return fmt.Errorf("fetch %s-%d at %d: %w", t.spec.Name, p.part, p.leo, err)
		}
		data := fp.RecordBatches
		if len(data) == 0 {
			if fp.HighWatermark > p.leo {
				return fmt.Errorf("fetch %s-%d: no data at %d below high watermark %d", t.spec.Name, p.part, p.leo, fp.HighWatermark)
			}
			return nil
		}
		name := fmt.Sprintf("fetch %s-%d@%d", t.spec.Name, p.part, p.leo)
		r := segment.NewReader(bytes.NewReader(data), int64(len(data)), name, segment.ReaderOptions{BaseOffset: -1})
		for r.Next() {
			h := *r.Batch()
			if h.LastOffset() < p.leo {
				continue
			}
			if err := p.appendBatch(data[h.Pos:h.Pos+h.Size()], &h); err != nil {
				return err
			}
		}
		// A fetch response may end in a partial batch; it is fetched again.
		if err := r.Err(); err != nil && !(segment.IsTruncated(err) && r.Count() > 0) {
			return fmt.Errorf("split fetched batches: %w", err)
		}
		if p.leo >= fp.HighWatermark {
			return nil
		}
	}
}

// Roll forces the active segment of a partition to roll, as segment.ms
// does. An empty active segment does not roll.
func (b *Broker) Roll(topicName string, partition int32) error {
	p, err := b.part(topicName, partition)
	if err != nil {
		return err
	}
	p.mu.Lock()
	rolled, err := p.forceRoll()
	p.mu.Unlock()
	if err != nil || !rolled {
		return err
	}
	return b.writeRootCheckpoints()
}

// DeleteOldestSegment applies retention to the partition's first segment:
// its files (and its producer snapshot) are renamed `.deleted` and removed
// after Config.FileDeleteDelay. The active segment is never deleted. It
// returns the deleted segment's base offset.
func (b *Broker) DeleteOldestSegment(topicName string, partition int32) (int64, error) {
	p, err := b.part(topicName, partition)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	base, err := p.deleteOldest()
	p.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("brokersim: %w", err)
	}
	return base, b.writeRootCheckpoints()
}

// Compact runs a simulated log-cleaner pass over one inactive segment of a
// Compacted topic's partition, replacing it by a segment with the same base
// offset that keeps only the latest record per key: .cleaned files are
// written, renamed .swap, the old files renamed .deleted (removed after
// Config.FileDeleteDelay), then the .swap files renamed into place.
func (b *Broker) Compact(topicName string, partition int32, base int64) error {
	t, err := b.topic(topicName)
	if err != nil {
		return err
	}
	if !t.spec.Compacted {
		return fmt.Errorf("brokersim: compact: topic %s is not Compacted (cleanup.policy=delete)", topicName)
	}
	p, err := b.part(topicName, partition)
	if err != nil {
		return err
	}
	p.mu.Lock()
	err = p.compact(base)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("brokersim: compact: %w", err)
	}
	return b.writeRootCheckpoints()
}

// BumpLeaderEpoch simulates a leader election won again by this broker:
// the partition's leader epoch grows by one from the current log end, and
// later batches carry it. Kafka does not roll on an epoch change.
func (b *Broker) BumpLeaderEpoch(topicName string, partition int32) error {
	p, err := b.part(topicName, partition)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bumpEpoch()
}

// DeleteTopic deletes a topic like LogManager.asyncDelete: each partition
// dir is renamed `topic-N.<32 hex>-delete` and removed after
// Config.FileDeleteDelay. The topic may then be created again with
// CreateTopic, which gives it a new topic id.
func (b *Broker) DeleteTopic(ctx context.Context, topicName string) error {
	b.mu.Lock()
	t := b.topics[topicName]
	if t == nil || b.closed {
		b.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownTopic, topicName)
	}
	delete(b.topics, topicName)
	b.mu.Unlock()
	t.prodMu.Lock()
	defer t.prodMu.Unlock()
	t.deleted = true
	t.closeProducers()
	var errs []error
	var dirs []string
	for _, p := range t.parts {
		p.mu.Lock()
		err := p.close()
		b.mu.Lock()
		to := fmt.Sprintf("%s.%s%s", p.dir, deleteDirSuffixID(b.rng), segment.DirSuffixDelete)
		b.mu.Unlock()
		if err == nil {
			err = os.Rename(p.dir, to)
		}
		if err == nil {
			dirs = append(dirs, to)
			p.step("delete topic: dir renamed -delete")
		}
		p.mu.Unlock()
		errs = append(errs, err)
	}
	if _, err := b.adm.DeleteTopic(ctx, topicName); err != nil {
		errs = append(errs, fmt.Errorf("delete topic in cluster: %w", err))
	}
	b.scheduleDelete(dirs...)
	errs = append(errs, b.writeRootCheckpoints())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("brokersim: delete topic %s: %w", topicName, err)
	}
	return nil
}

// scheduleDelete removes paths after FileDeleteDelay, or at PurgeDeleted or
// Close when the delay is zero.
func (b *Broker) scheduleDelete(paths ...string) {
	if len(paths) == 0 {
		return
	}
	pd := &pendingDelete{paths: paths}
	b.delMu.Lock()
	defer b.delMu.Unlock()
	b.pending[pd] = struct{}{}
	if d := b.cfg.FileDeleteDelay; d > 0 {
		pd.timer = time.AfterFunc(d, func() {
			b.delMu.Lock()
			_, ok := b.pending[pd]
			delete(b.pending, pd)
			b.delMu.Unlock()
			if ok {
				_ = removeAll(pd.paths)
			}
		})
	}
}

func removeAll(paths []string) error {
	var errs []error
	for _, p := range paths {
		errs = append(errs, os.RemoveAll(p))
	}
	return errors.Join(errs...)
}

// PurgeDeleted removes every `.deleted` file and `-delete` dir still
// waiting for its delay.
func (b *Broker) PurgeDeleted() error {
	b.delMu.Lock()
	var paths []string
	for pd := range b.pending {
		if pd.timer != nil {
			pd.timer.Stop()
		}
		paths = append(paths, pd.paths...)
	}
	clear(b.pending)
	b.delMu.Unlock()
	return removeAll(paths)
}

// writeRootCheckpoints writes the four offset checkpoints at the log dir
// root from the partitions' current state.
func (b *Broker) writeRootCheckpoints() error {
	b.mu.Lock()
	var parts []*partLog
	for _, t := range b.topics {
		parts = append(parts, t.parts...)
	}
	b.mu.Unlock()
	slices.SortFunc(parts, func(x, y *partLog) int {
		if x.topic != y.topic {
			if x.topic < y.topic {
				return -1
			}
			return 1
		}
		return int(x.part - y.part)
	})
	// ls stays empty: only logs whose start offset is above their first
	// segment's base get an entry (LogManager.checkpointLogStartOffsetsInDir),
	// and segment retention keeps the two equal.
	var rp, ls, hw, cl []index.CheckpointEntry
	for _, p := range parts {
		rp = append(rp, index.CheckpointEntry{Topic: p.topic, Partition: p.part, Offset: p.recoveryPoint.Load()})
		hw = append(hw, index.CheckpointEntry{Topic: p.topic, Partition: p.part, Offset: p.highWatermark.Load()})
		if c := p.cleanerPoint.Load(); c >= 0 {
			cl = append(cl, index.CheckpointEntry{Topic: p.topic, Partition: p.part, Offset: c})
		}
	}
	b.ckMu.Lock()
	defer b.ckMu.Unlock()
	dir := b.cfg.Dir
	errs := []error{
		writeAtomic(filepath.Join(dir, index.RecoveryPointFile), index.FormatOffsetCheckpoint(rp), b.cfg.Sync),
		writeAtomic(filepath.Join(dir, index.LogStartOffsetFile), index.FormatOffsetCheckpoint(ls), b.cfg.Sync),
		writeAtomic(filepath.Join(dir, index.ReplicationOffsetFile), index.FormatOffsetCheckpoint(hw), b.cfg.Sync),
	}
	// The cleaner's checkpoint is created empty and only written once the
	// cleaner has cleaned something.
	if len(cl) > 0 || b.cleanerWrites {
		b.cleanerWrites = true
		errs = append(errs, writeAtomic(filepath.Join(dir, index.CleanerOffsetFile), index.FormatOffsetCheckpoint(cl), b.cfg.Sync))
	} else if f, err := os.OpenFile(filepath.Join(dir, index.CleanerOffsetFile), os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, f.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("brokersim: root checkpoints: %w", err)
	}
	return nil
}

// Close stops background producers, the clients and the cluster, closes the
// files without the clean-shutdown steps (active indexes stay preallocated,
// no .kafka_cleanshutdown, as after a kill) and removes pending deletions.
func (b *Broker) Close() error { return b.close(false) }

// Shutdown is Close with a clean broker shutdown (LogManager.shutdown):
// every log gets a producer snapshot at its log end and its active
// segment's indexes trimmed with the final time-index entry, the
// checkpoints are written with recovery points at the log ends, and last
// the .kafka_cleanshutdown marker ({"version":0,"brokerEpoch":N}, 3.7+).
func (b *Broker) Shutdown() error { return b.close(true) }

func (b *Broker) close(clean bool) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	loops := b.loops
	b.loops = nil
	b.mu.Unlock()
	var errs []error
	for _, l := range loops {
		errs = append(errs, l.stop())
	}
	b.mu.Lock()
	b.closed = true
	ts := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		ts = append(ts, t)
	}
	b.mu.Unlock()
	for _, t := range ts {
		t.prodMu.Lock()
		t.closeProducers()
		for _, p := range t.parts {
			p.mu.Lock()
			if clean {
				errs = append(errs, p.closeClean())
			} else {
				errs = append(errs, p.close())
			}
			p.mu.Unlock()
		}
		t.prodMu.Unlock()
	}
	if clean {
		b.mu.Lock()
		epoch := 1 + b.rng.IntN(100)
		b.mu.Unlock()
		errs = append(errs, b.writeRootCheckpoints())
		if err := errors.Join(errs...); err == nil {
			marker := fmt.Sprintf(`{"version":0,"brokerEpoch":%d}`, epoch)
			errs = append(errs, writeAtomic(filepath.Join(b.cfg.Dir, index.CleanShutdownFile), []byte(marker), b.cfg.Sync))
		}
	}
	if b.client != nil {
		b.client.Close()
	}
	if b.cluster != nil {
		b.cluster.Close()
	}
	errs = append(errs, b.PurgeDeleted())
	return errors.Join(errs...)
}
