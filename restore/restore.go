package restore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/internal/kafkadir"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// TempDirName is the dir, inside each target log dir, where partitions are
// built before they are renamed into place. Kafka refuses to start on a log
// dir holding it (it is not a topic-partition name), so a restore removes it
// when done; an interrupted restore is resumed by running it again.
const TempDirName = ".segvault-restore"

// BootstrapCheckpointFile is KRaft's bootstrap metadata (metadata.version
// and other feature levels) at the root of the metadata log dir.
const BootstrapCheckpointFile = "bootstrap.checkpoint"

// OpenTxnPolicy says what to do with transactions still open at the end of
// the restored range.
type OpenTxnPolicy string

// Policies for open transactions.
const (
	// AbortOpen appends an ABORT marker for each open transaction, as the
	// transaction coordinator would on timeout: read_committed consumers see
	// every committed record up to the cut and nothing of the open ones.
	AbortOpen OpenTxnPolicy = "abort"
	// TruncateOpen cuts the log back to before the first batch of the
	// earliest open transaction: nothing undecided is restored.
	TruncateOpen OpenTxnPolicy = "truncate"
	// KeepOpen leaves them open (the restored cluster's coordinator, if it
	// knows them, decides; read_committed consumers wait until then).
	KeepOpen OpenTxnPolicy = "keep"
)

// Options control a restore.
type Options struct {
	Targets []string // log dirs to write into; partitions are spread over them
	Force   bool     // replace existing non-empty partition dirs
	// IntoOtherCluster allows targets whose meta.properties names another
	// cluster id than the plan's.
	IntoOtherCluster bool
	Concurrency      int               // parallel downloads
	ToOffset         int64             // keep records up to and including this offset (-1: all)
	ToTime           int64             // keep batches whose max timestamp <= this (ms, -1: all)
	OpenTxns         OpenTxnPolicy     // default AbortOpen
	TopicIDs         map[string]string // restored topic name -> topic id to write
	Rename           map[string]string // archived topic name -> restored topic name
	NodeID           int32             // whole-broker rebuild: node.id to write (-1: the archived one)
	Log              *slog.Logger
	Progress         *Progress
}

// Report sums up a restore.
type Report struct {
	Partitions   int
	Skipped      int // already restored (identical), left alone
	Segments     int
	Files        int
	Resumed      int   // files found verified in the temp dir
	Fetched      int64 // raw bytes fetched and verified (or found verified)
	Bytes        int64 // bytes written into the restored partition dirs (after any cut)
	LogBytes     int64 // of which record data (.log files)
	Rebuilt      int   // index files rebuilt rather than restored
	AbortMarkers int
	Cut          map[string]int64 // partition -> last offset kept, for point-in-time restores
	Gaps         []string
	Empty        int // partitions restored empty at their last known log end
	Started      time.Time
	Finished     time.Time
	Duration     time.Duration
}

// Existing is a partition dir that is already in a target.
type Existing struct {
	Partition string `json:"partition"` // restored name, topic-partition
	Dir       string `json:"dir"`
	Action    string `json:"action"` // ActionIdentical, ActionReplace or ActionRefuse
}

// What restore does with an existing partition dir.
const (
	ActionIdentical = "identical: left alone"
	ActionReplace   = "replaced (--force)"
	ActionRefuse    = "refused: not empty (--force replaces it)"
)

// RefusedError is a restore refused before anything was written: a target
// locked by a running broker, or belonging to another cluster.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// Check refuses targets restore must not write into, whatever the options:
// a log dir whose .lock a running process (a broker) holds, and one whose
// meta.properties names another cluster (unless IntoOtherCluster). It then
// lists the partition dirs of the plan that already exist and what Run
// would do with each.
func Check(plan *Plan, opts Options) ([]Existing, error) {
	for _, t := range opts.Targets {
		held, err := kafkadir.LockHeld(t)
		if err != nil {
			return nil, fmt.Errorf("target %s: check %s: %w", t, filepath.Join(t, kafkadir.LockFile), err)
		}
		if held {
			return nil, &RefusedError{fmt.Sprintf("target %s: %s is held by a running process (a Kafka broker?): stop it before restoring",
				t, filepath.Join(t, kafkadir.LockFile))}
		}
		mp := filepath.Join(t, index.MetaPropertiesFile)
		data, err := fsutil.ReadFileRegular(mp)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t, err)
		}
		m, err := index.ParseMetaProperties(mp, data)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t, err)
		}
		if m.ClusterID != "" && plan.Cluster != "" && m.ClusterID != plan.Cluster && !opts.IntoOtherCluster {
			return nil, &RefusedError{fmt.Sprintf("target %s: %s names cluster.id %s, the archive is of cluster %s: not restoring into another cluster's log dir without --into-other-cluster",
				t, mp, m.ClusterID, plan.Cluster)}
		}
	}
	jobs, err := assign(plan, opts)
	if err != nil {
		return nil, err
	}
	pointInTime := opts.ToOffset >= 0 || opts.ToTime >= 0
	var out []Existing
	for _, j := range jobs {
		name := fmt.Sprintf("%s-%d", j.topic, j.pp.Partition)
		final := filepath.Join(j.target, name)
		ents, err := os.ReadDir(final)
		if err != nil || len(ents) == 0 {
			continue
		}
		e := Existing{Partition: name, Dir: final, Action: ActionRefuse}
		if !pointInTime && matchesPlan(final, j.pp) {
			e.Action = ActionIdentical
		} else if opts.Force {
			e.Action = ActionReplace
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

type partitionJob struct {
	pp     *PartitionPlan
	topic  string // restored name
	target string
}

// Run executes a plan.
func Run(ctx context.Context, src Source, plan *Plan, opts Options) (*Report, error) {
	start := time.Now()
	if len(opts.Targets) == 0 {
		return nil, errors.New("no target log dir")
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 4
	}
	if opts.OpenTxns == "" {
		opts.OpenTxns = AbortOpen
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rep := &Report{Cut: map[string]int64{}, Started: start}
	if _, err := Check(plan, opts); err != nil {
		return nil, err
	}
	jobs, err := assign(plan, opts)
	if err != nil {
		return nil, err
	}
	for _, t := range opts.Targets {
		if err := os.MkdirAll(t, 0o755); err != nil {
			return nil, fmt.Errorf("create target %s: %w", t, err)
		}
	}
	var total int64
	for _, j := range jobs {
		total += j.pp.Bytes
		for _, g := range j.pp.Gaps {
			if g.Tail && (opts.ToOffset >= 0 || opts.ToTime >= 0) {
				continue
			}
			rep.Gaps = append(rep.Gaps, fmt.Sprintf("%s-%d: offsets %d..%d missing (%s)", j.pp.Topic, j.pp.Partition, g.From, g.To-1, g.Reason))
		}
	}
	opts.Progress.Start(len(jobs), total)
	var mu sync.Mutex
	ranges := map[string]restoredRange{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, min(opts.Concurrency, len(jobs))))
	for _, j := range jobs {
		g.Go(func() error {
			pr, err := restorePartition(gctx, src, j, opts)
			if err != nil {
				return fmt.Errorf("restore %s-%d: %w", j.topic, j.pp.Partition, err)
			}
			mu.Lock()
			defer mu.Unlock()
			ranges[fmt.Sprintf("%s %d", j.topic, j.pp.Partition)] = restoredRange{target: j.target, first: pr.first, end: pr.end}
			rep.Partitions++
			if pr.skipped {
				rep.Skipped++
			}
			rep.Segments += pr.segments
			rep.Files += pr.files
			rep.Resumed += pr.resumed
			rep.Fetched += pr.fetched
			rep.Bytes += pr.bytes
			rep.LogBytes += pr.logBytes
			if pr.empty {
				rep.Empty++
			}
			rep.Rebuilt += pr.rebuilt
			rep.AbortMarkers += pr.markers
			if pr.cut >= -1 && (opts.ToOffset >= 0 || opts.ToTime >= 0) {
				rep.Cut[fmt.Sprintf("%s-%d", j.topic, j.pp.Partition)] = pr.cut
			}
			opts.Progress.PartitionDone()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	if err := writeRootFiles(plan, opts, ranges); err != nil {
		return rep, err
	}
	for _, t := range opts.Targets {
		os.Remove(filepath.Join(t, TempDirName)) // only when empty
	}
	opts.Progress.Finish()
	rep.Finished = time.Now()
	rep.Duration = rep.Finished.Sub(start)
	return rep, nil
}

// assign maps partitions to target dirs (least bytes first, the metadata
// log to the first target as metadata.log.dir defaults to it) and applies
// renames.
func assign(plan *Plan, opts Options) ([]partitionJob, error) {
	load := make([]int64, len(opts.Targets))
	parts := append([]*PartitionPlan(nil), plan.Partitions...)
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].Bytes > parts[j].Bytes })
	var jobs []partitionJob
	seen := map[string]bool{}
	for _, pp := range parts {
		topic := pp.Topic
		if n, ok := opts.Rename[topic]; ok {
			topic = n
		}
		if err := segment.ValidateTopic(topic); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s-%d", topic, pp.Partition)
		if seen[name] {
			return nil, fmt.Errorf("two archived partitions would be restored as %s", name)
		}
		seen[name] = true
		t := 0
		if pp.Topic != "__cluster_metadata" {
			for i := range load {
				if load[i] < load[t] {
					t = i
				}
			}
		}
		load[t] += pp.Bytes
		jobs = append(jobs, partitionJob{pp: pp, topic: topic, target: opts.Targets[t]})
	}
	return jobs, nil
}

type partResult struct {
	skipped, empty                             bool
	segments, files, resumed, rebuilt, markers int
	fetched, bytes, logBytes                   int64
	cut                                        int64
	first, end                                 int64 // restored offset range [first, end)
}

// restorePartition builds one partition dir in the temp dir and renames it
// into place.
func restorePartition(ctx context.Context, src Source, j partitionJob, opts Options) (partResult, error) {
	res := partResult{cut: -2}
	pp := j.pp
	name := fmt.Sprintf("%s-%d", j.topic, pp.Partition)
	final := filepath.Join(j.target, name)
	tmpRoot := filepath.Join(j.target, TempDirName)
	tmp := filepath.Join(tmpRoot, name)
	pointInTime := opts.ToOffset >= 0 || opts.ToTime >= 0
	if ents, err := os.ReadDir(final); err == nil && len(ents) > 0 {
		if !pointInTime && matchesPlan(final, pp) {
			res.skipped = true
			opts.Progress.Add(pp.Bytes)
			return res, nil
		}
		if !opts.Force {
			return res, fmt.Errorf("%s exists and is not empty: not touching it without --force", final)
		}
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return res, err
	}
	fail := func(err error) (partResult, error) {
		if errors.Is(err, uploader.ErrIntegrity) || errors.Is(err, segment.ErrCorrupt) {
			os.RemoveAll(tmp) // never keep bytes that failed verification
		}
		return res, err
	}
	// 1. Fetch and verify every file.
	all := append(append([]Segment(nil), pp.Segments...), pp.Snapshots...)
	fetched := map[string]bool{} // names fetched by this run: not resumed when the next manifest carries the same file
	for _, s := range all {
		for _, f := range s.Manifest.Files {
			resumed, err := fetchFile(ctx, src, tmp, f, opts.Progress)
			if err != nil {
				return fail(fmt.Errorf("object %s (%s): %w", objectKey(f), f.Name, err))
			}
			if resumed && fetched[f.Name] {
				continue // the same file again (leader-epoch-checkpoint of every segment): counted once
			}
			fetched[f.Name] = true
			res.files++
			res.fetched += f.Size
			if resumed {
				res.resumed++
			}
		}
	}
	res.segments = len(pp.Segments)
	// 2. Cut, close open transactions, rebuild what is missing. An offset
	// cut names offsets of the data partitions: the metadata log is cut by
	// time only (its offsets are its own).
	lopts := opts
	if pp.Topic == metadataTopic {
		lopts.ToOffset = -1
	}
	end, err := finishLog(tmp, pp, lopts, &res)
	if err != nil {
		return fail(err)
	}
	if pp.Topic == metadataTopic && lopts.ToTime >= 0 && len(pp.Segments) > 0 {
		// KRaft snapshots past the cut would be newer than the restored
		// log: Kafka then loads a snapshot beyond the log's end (a
		// restored broker hung at start on one).
		if err := dropSnapshotsAfter(tmp, end); err != nil {
			return fail(err)
		}
	}
	res.end = end
	if len(pp.Segments) > 0 {
		res.first = pp.Segments[0].Manifest.BaseOffset
	} else if pp.EmptyAt >= 0 && pp.Topic != metadataTopic {
		// Known to the archive but no segment of it is: an empty log at
		// its last known end (as Kafka leaves one after retention), so new
		// writes do not reuse offsets consumers have already seen.
		for _, k := range []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex} {
			if err := writeFile(filepath.Join(tmp, segment.FormatName(pp.EmptyAt, k)), nil); err != nil {
				return fail(err)
			}
		}
		res.first, res.end, end, res.empty = pp.EmptyAt, pp.EmptyAt, pp.EmptyAt, true
	}
	if len(pp.Segments) > 0 && !pointInTime && pp.TailAt > end {
		// The active segment was never archived: end the log at the
		// broker's captured log end with an empty segment (an offset gap
		// between segments, as compaction leaves), so new writes do not
		// reuse offsets consumers may have seen.
		for _, k := range []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex} {
			if err := writeFile(filepath.Join(tmp, segment.FormatName(pp.TailAt, k)), nil); err != nil {
				return fail(err)
			}
		}
		res.end, end = pp.TailAt, pp.TailAt
	}
	// 3. Partition side files.
	if err := writePartitionFiles(tmp, pp, j.topic, end, opts); err != nil {
		return fail(err)
	}
	if err := syncTree(tmp); err != nil {
		return res, err
	}
	if res.bytes, res.logBytes, err = treeSize(tmp); err != nil {
		return res, err
	}
	// 4. Into place.
	if _, err := os.Stat(final); err == nil {
		old := filepath.Join(tmpRoot, name+".replaced")
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return res, err
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return res, err
	}
	return res, fsutil.SyncDir(j.target)
}

// dropSnapshotsAfter removes the KRaft snapshots (<offset>-<epoch>.checkpoint)
// of dir whose offset is past end, the restored log's end offset.
func dropSnapshotsAfter(dir string, end int64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindCheckpoint && n.Suffix == "" && n.BaseOffset > end {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// directMinSize: files from this size on are written with O_DIRECT.
const directMinSize = 1 << 20

// fetchFile downloads one file into dir, verified; a file already there with
// the recorded size and SHA-256 (an interrupted restore) is kept.
func fetchFile(ctx context.Context, src Source, dir string, f archive.FileRecord, p *Progress) (bool, error) {
	path := filepath.Join(dir, f.Name)
	if fi, err := os.Stat(path); err == nil && fi.Size() == f.Size {
		if sum, err := fileSHA256(path); err == nil && sum == f.SHA256 {
			p.Add(f.Size)
			return true, nil
		}
	}
	rc, err := src.Open(ctx, f)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	part := path + ".part"
	var out interface {
		io.Writer
		Sync() error
		Close() error
	}
	if f.Size >= directMinSize {
		out, err = fsutil.CreateDirect(part, 0o644) // no page cache (fsutil.DirectFile)
	} else {
		out, err = os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	}
	if err != nil {
		return false, err
	}
	n, err := io.Copy(out, io.TeeReader(rc, progressWriter{p}))
	if err == nil && n != f.Size {
		err = fmt.Errorf("%w: %d bytes, manifest says %d", uploader.ErrIntegrity, n, f.Size)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, path)
	}
	if err != nil {
		os.Remove(part)
		return false, err
	}
	if !f.ModTime.IsZero() {
		os.Chtimes(path, f.ModTime, f.ModTime)
	}
	return false, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// matchesPlan reports whether dir already holds every planned file intact.
func matchesPlan(dir string, pp *PartitionPlan) bool {
	if len(pp.Segments) == 0 && pp.EmptyAt >= 0 {
		if _, err := os.Stat(filepath.Join(dir, segment.FormatName(pp.EmptyAt, segment.KindLog))); err != nil {
			return false
		}
	}
	if len(pp.Segments) > 0 && pp.TailAt > 0 {
		if _, err := os.Stat(filepath.Join(dir, segment.FormatName(pp.TailAt, segment.KindLog))); err != nil {
			return false
		}
	}
	for _, s := range append(append([]Segment(nil), pp.Segments...), pp.Snapshots...) {
		for _, f := range s.Manifest.Files {
			if f.Name != s.Manifest.Files[0].Name {
				continue // indexes may have been rebuilt; the data is what matters
			}
			sum, err := fileSHA256(filepath.Join(dir, f.Name))
			if err != nil || sum != f.SHA256 {
				return false
			}
		}
	}
	return true
}

// writePartitionFiles writes leader-epoch-checkpoint, partition.metadata and
// (metadata log) quorum-state, consistent with the restored range [_, end).
func writePartitionFiles(dir string, pp *PartitionPlan, topic string, end int64, opts Options) error {
	var latest *archive.PartitionState
	var latestAt time.Time
	for _, s := range pp.Segments {
		if ps := s.Manifest.PartitionState; ps != nil && !ps.CapturedAt.Before(latestAt) {
			latest, latestAt = ps, ps.CapturedAt
		}
	}
	// Leader epochs. A full restore writes the archived checkpoint as it
	// was (it was captured after the last restored segment rolled). A cut,
	// or a missing checkpoint, writes what Kafka's recovery would: the
	// epochs of the restored batches, clipped to the restored range.
	pointInTime := opts.ToOffset >= 0 || opts.ToTime >= 0
	var data []byte
	if latest != nil && latest.LeaderEpochCheckpoint != nil && !pointInTime {
		if _, err := index.ParseLeaderEpochCheckpoint(index.LeaderEpochCheckpointFile, latest.LeaderEpochCheckpoint); err == nil {
			data = latest.LeaderEpochCheckpoint
		}
	}
	if data == nil {
		var epochs []index.EpochEntry
		if latest != nil {
			if e, err := index.ParseLeaderEpochCheckpoint(index.LeaderEpochCheckpointFile, latest.LeaderEpochCheckpoint); err == nil {
				epochs = e
			}
		}
		for _, s := range pp.Segments {
			for _, e := range s.Manifest.Summary.LeaderEpochs {
				epochs = append(epochs, index.EpochEntry{Epoch: e.Epoch, StartOffset: e.StartOffset})
			}
		}
		data = index.FormatLeaderEpochCheckpoint(index.MergeLeaderEpochs(epochs, end))
	}
	if pp.Topic != "__cluster_metadata" {
		if err := writeFile(filepath.Join(dir, index.LeaderEpochCheckpointFile), data); err != nil {
			return err
		}
	}
	id := pp.TopicID
	if v, ok := opts.TopicIDs[topic]; ok {
		id = v
	}
	if id != archive.NoTopicID {
		if err := index.ValidateTopicID(id); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, index.PartitionMetadataFile), index.FormatPartitionMetadata(id)); err != nil {
			return err
		}
	}
	if pp.Topic == "__cluster_metadata" && latest != nil && len(latest.QuorumState) > 0 {
		if err := writeFile(filepath.Join(dir, "quorum-state"), latest.QuorumState); err != nil {
			return err
		}
	}
	return nil
}

// restoredRange is where a partition went and which offsets it holds.
type restoredRange struct {
	target     string
	first, end int64
}

// writeRootFiles writes, for whole-broker rebuilds, meta.properties into
// each target that lacks one (the archived node id, cluster id and directory
// id; a new directory id for targets beyond the archived log dirs) and the
// offset checkpoints: replication (high watermark) and cleaner offsets of
// the restored partitions, clamped to the restored range, and log-start
// offsets only where they do not hide restored history. The
// recovery-point checkpoint is deliberately not restored: without it Kafka
// re-validates every restored segment at start-up.
func writeRootFiles(plan *Plan, opts Options, ranges map[string]restoredRange) error {
	if len(plan.LogDirs) == 0 {
		return nil
	}
	var base *index.MetaProperties
	metas := make([]*index.MetaProperties, len(plan.LogDirs))
	raws := make([][]byte, len(plan.LogDirs))
	checkpoints := map[string][]index.CheckpointEntry{}
	own := make([]map[string][]byte, len(plan.LogDirs)) // capture i's raw checkpoint files
	var boot []byte
	for i, ld := range plan.LogDirs {
		for _, f := range ld.Files {
			switch f.Name {
			case BootstrapCheckpointFile:
				if boot == nil {
					boot = f.Content
				}
			case index.MetaPropertiesFile:
				m, err := index.ParseMetaProperties(ld.LogDir+"/"+f.Name, f.Content)
				if err != nil {
					return err
				}
				metas[i], raws[i] = m, f.Content
				if base == nil {
					base = m
				}
			case index.LogStartOffsetFile, index.ReplicationOffsetFile, index.CleanerOffsetFile:
				e, err := index.ParseOffsetCheckpoint(ld.LogDir+"/"+f.Name, f.Content)
				if err != nil {
					return err
				}
				checkpoints[f.Name] = append(checkpoints[f.Name], e...)
				if own[i] == nil {
					own[i] = map[string][]byte{}
				}
				own[i][f.Name] = f.Content
			}
		}
	}
	for i, t := range opts.Targets {
		if base != nil {
			m := *base
			if i < len(metas) && metas[i] != nil {
				m = *metas[i]
			} else if m.DirectoryID != "" {
				m.DirectoryID = newUUID() // every log dir needs its own directory.id
			}
			if opts.NodeID >= 0 {
				m.NodeID = opts.NodeID
			}
			data := index.FormatMetaProperties(&m, time.Now().UTC().Format(time.UnixDate))
			if i < len(raws) && raws[i] != nil && (opts.NodeID < 0 || opts.NodeID == metas[i].NodeID) {
				data = raws[i] // unchanged: the archived bytes
			}
			p := filepath.Join(t, index.MetaPropertiesFile)
			if _, err := os.Stat(p); err != nil || opts.Force {
				if err := writeRootFile(p, data); err != nil {
					return err
				}
			}
		}
		if i == 0 && boot != nil {
			// bootstrap.checkpoint lives in the metadata log dir, where
			// the metadata log goes (the first target).
			p := filepath.Join(t, BootstrapCheckpointFile)
			if _, err := os.Stat(p); err != nil || opts.Force {
				if err := writeRootFile(p, boot); err != nil {
					return err
				}
			}
		}
		for name, entries := range checkpoints {
			var out []index.CheckpointEntry
			for _, e := range entries {
				topic := e.Topic
				if n, ok := opts.Rename[topic]; ok {
					topic = n
				}
				r, ok := ranges[fmt.Sprintf("%s %d", topic, e.Partition)]
				if !ok || r.target != t {
					continue
				}
				if name == index.LogStartOffsetFile && e.Offset > r.first {
					// The restore brings back archived history below the
					// broker's log start (segments retention had deleted);
					// the restored segments define the log start.
					continue
				}
				e.Topic, e.Offset = topic, min(max(e.Offset, r.first), r.end)
				out = append(out, e)
			}
			data := index.FormatOffsetCheckpoint(out)
			if i < len(own) && own[i][name] != nil {
				// Unchanged by the restore: write the archived bytes.
				if orig, err := index.ParseOffsetCheckpoint(name, own[i][name]); err == nil && slices.Equal(orig, out) {
					data = own[i][name]
				}
			}
			if err := writeRootFile(filepath.Join(t, name), data); err != nil {
				return err
			}
		}
		if err := fsutil.SyncDir(t); err != nil {
			return err
		}
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeFile writes a small file (fsynced by syncTree later).
func writeFile(path string, data []byte) error {
	return os.WriteFile(path, data, 0o644)
}

// treeSize sums the sizes of the files in dir, and of its .log files.
func treeSize(dir string) (all, logs int64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return 0, 0, err
		}
		if fi.Mode().IsRegular() {
			all += fi.Size()
			if strings.HasSuffix(e.Name(), ".log") {
				logs += fi.Size()
			}
		}
	}
	return all, logs, nil
}

// writeRootFile writes a file at a log dir's root crash-safely (temp,
// fsync, rename, fsync dir): it may replace the broker's own copy.
func writeRootFile(path string, data []byte) error {
	return fsutil.WriteFileAtomic(path, data, 0o644)
}

// syncTree fsyncs every file in dir, then dir itself.
func syncTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return fsutil.SyncDir(dir)
}

type progressWriter struct{ p *Progress }

func (w progressWriter) Write(b []byte) (int, error) { w.p.Add(int64(len(b))); return len(b), nil }

// Progress reports restore progress: a bar on a terminal, log lines otherwise.
// A nil *Progress reports nothing.
type Progress struct {
	Out      io.Writer
	Terminal bool
	Every    time.Duration // log-line interval when not a terminal

	parts, doneParts atomic.Int64
	total, done      atomic.Int64
	start            time.Time
	last             atomic.Int64
}

// Start begins reporting.
func (p *Progress) Start(parts int, bytes int64) {
	if p == nil {
		return
	}
	p.parts.Store(int64(parts))
	p.total.Store(bytes)
	p.start = time.Now()
	if p.Every == 0 {
		p.Every = 5 * time.Second
	}
}

// Add counts bytes written.
func (p *Progress) Add(n int64) {
	if p == nil {
		return
	}
	p.done.Add(n)
	p.maybePrint(false)
}

// PartitionDone counts a finished partition.
func (p *Progress) PartitionDone() {
	if p == nil {
		return
	}
	p.doneParts.Add(1)
	p.maybePrint(false)
}

// Finish prints the final state.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.maybePrint(true)
	if p.Terminal {
		fmt.Fprintln(p.Out)
	}
}

func (p *Progress) maybePrint(force bool) {
	now := time.Now()
	every := p.Every
	if p.Terminal {
		every = 200 * time.Millisecond
	}
	last := p.last.Load()
	if !force && now.UnixNano()-last < int64(every) {
		return
	}
	if !p.last.CompareAndSwap(last, now.UnixNano()) && !force {
		return
	}
	done, total := p.done.Load(), p.total.Load()
	el := now.Sub(p.start).Seconds()
	rate := float64(done) / max(el, 1e-3)
	eta := formatETA(done, total, now.Sub(p.start))
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	if p.Terminal {
		width := 30
		fill := int(pct / 100 * float64(width))
		fmt.Fprintf(p.Out, "\r[%s%s] %5.1f%%  partitions %d/%d  %s/%s  %s/s  ETA %s   ",
			strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, p.doneParts.Load(), p.parts.Load(),
			humanBytes(done), humanBytes(total), humanBytes(int64(rate)), eta)
		return
	}
	fmt.Fprintf(p.Out, "restore progress: partitions=%d/%d bytes=%d/%d (%.1f%%) rate=%s/s eta=%s\n",
		p.doneParts.Load(), p.parts.Load(), done, total, pct, humanBytes(int64(rate)), eta)
}

// formatETA is the time left at the rate so far, in whole seconds: "?"
// before anything was done, "0s" when done.
func formatETA(done, total int64, elapsed time.Duration) string {
	if total <= done {
		return "0s"
	}
	if done <= 0 {
		return "?"
	}
	rate := float64(done) / max(elapsed.Seconds(), 1e-3) // bytes per second
	return time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
