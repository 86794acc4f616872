package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// Tail capture (issue 15; docs/FORMAT.md "Tail captures", docs/OPERATIONS.md
// "Recovery point"). While the broker writes, the complete batches that
// passed their CRC and were appended to each partition's active segment
// since the last capture are uploaded, for all partitions of the broker at
// once, as one pack object (create-only) followed by its TailManifest
// (create-only, written last: its presence is the commit). A capture round
// runs every TailInterval, sooner when TailMaxBytes have accumulated (but
// never closer than a few seconds), and makes no request when nothing new
// was appended.
//
// Crash safety: before the pack is written, the capture is recorded as
// pending in the tail state with the tracks it would commit. After a crash
// or a failed manifest PUT, the pending capture is settled before any new
// one: an abandon marker (a TailManifest with no captures) is created at its
// manifest key; if that key already holds the real manifest the capture did
// commit and its tracks are adopted, otherwise it never will (create-only)
// and its pack is an orphan. So no committed capture is ever repeated by
// another one, and nothing committed is forgotten.

// tailer is the tail-capture loop's state; it is used by one goroutine.
type tailer struct {
	a     *Agent
	st    *tailState
	codec *archive.ChunkCodec
	init  bool // pending settled, seq known
	id    BrokerIdentity
	start time.Time

	lastRound time.Time
	lastObs   time.Time
	backlog   bool                    // the last round left bytes for lack of budget
	rt        map[string]*tailRuntime // by track key
	// rolled: segments that rolled while tracked, by candidate key, with
	// the time since which bytes of them were not captured (zero: all
	// captured). Dropped once local state records the segment, or when no
	// pass of this agent took it up (another replica archives it:
	// archive-replicas designated), so a standby's map does not grow.
	rolled map[string]rolledSeg
	warned map[string]int64 // invalid batch reported once per track and position
	// observeOnly: tail capture is off; nothing is read (watch).
	observeOnly bool
	// standby: tracks of the last round left to the partition's designated
	// archiver (archive-replicas=designated; Agent.tailStandby).
	standby map[string]bool
}

// tailRuntime is what the loop knows about a track between rounds.
type tailRuntime struct {
	readSize  int64
	readMTime time.Time
	// pendingSince is (an upper bound of) when the oldest byte not yet
	// captured was appended; zero when everything is captured.
	pendingSince time.Time
	dn           segment.DirName
}

// startTail starts the tail-capture loop for the daemon (Run); stop waits
// for it to end: on ctx's cancellation it makes a last capture (bounded by
// DrainTimeout, as uploads in flight) and saves its state.
func (a *Agent) startTail(ctx context.Context) (stop func()) {
	cfg := a.snap()
	if a.cfg.IncludeActive || ctx.Err() != nil {
		return func() {} // a stopped broker (active segments archived whole), or stopped already
	}
	if !cfg.tailOn() {
		a.log.Info("tail capture off: only rolled segments are archived (the recovery point is the last roll)")
		t := newTailer(a)
		done := make(chan struct{})
		go func() {
			defer close(done)
			t.watch(ctx)
		}()
		return func() { <-done }
	}
	t := newTailer(a)
	work := a.workCtx
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.run(ctx, work)
	}()
	return func() { <-done }
}

func newTailer(a *Agent) *tailer {
	return &tailer{a: a, codec: archive.NewChunkCodec(), start: time.Now(), rt: map[string]*tailRuntime{},
		rolled: map[string]rolledSeg{}, warned: map[string]int64{}}
}

// run is the loop: a round at start, then every interval, or early.
func (t *tailer) run(ctx, work context.Context) {
	cfg := t.a.snap()
	// Stat (no read) four times an interval, at most every 5s: the
	// recovery-point gauge and the tail-max-bytes trigger follow appends.
	tick := time.NewTicker(min(tailMinGap, max(cfg.tailInterval()/4, 250*time.Millisecond)))
	defer tick.Stop()
	t.round(work)
	for {
		select {
		case <-ctx.Done():
			t.round(work) // drain: capture what was appended up to the stop
			return
		case <-tick.C:
		}
		cfg := t.a.snap()
		now := time.Now()
		acc := t.observe(now)
		gap := min(tailMinGap, cfg.tailInterval())
		if now.Sub(t.lastRound) >= cfg.tailInterval() ||
			((acc >= cfg.tailMaxBytes() || t.backlog) && now.Sub(t.lastRound) >= gap) {
			t.round(work)
		}
	}
}

// watch is the loop with tail capture off: it never reads, uploads or
// saves anything; it stats the active segments (as run does between
// rounds) so that segvault_agent_rpo_seconds still tells the age of the
// oldest appended byte only a roll will archive.
func (t *tailer) watch(ctx context.Context) {
	t.observeOnly, t.init = true, true
	t.st = &tailState{Version: tailStateVersion, Tracks: map[string]*tailTrack{}} // in memory only
	cfg := t.a.snap()
	tick := time.NewTicker(min(tailMinGap, max(cfg.tailInterval()/4, 250*time.Millisecond)))
	defer tick.Stop()
	for {
		now := time.Now()
		t.scan(now)
		t.observe(now)
		t.lastRound = now
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// fail counts and logs a failed step.
func (t *tailer) fail(stage string, err error, args ...any) {
	t.a.metrics.TailFailures.WithLabelValues(stage).Inc()
	t.a.log.Error("tail capture failed; will retry next round", append([]any{"stage", stage, "err", err}, args...)...)
}

// setup loads the state, settles a pending capture and finds the next seq.
func (t *tailer) setup(ctx context.Context) error {
	if t.st == nil {
		st, fresh, err := loadTailState(t.a.cfg.StateDir)
		if err != nil {
			t.a.metrics.TailFailures.WithLabelValues("state").Inc()
			t.a.log.Warn("tail-capture state not usable; capture chains start again from byte 0", "err", err)
		}
		if st.jr.torn > 0 {
			t.a.metrics.TailFailures.WithLabelValues("state").Inc()
			t.a.log.Warn("tail-capture state journal ends with a torn record (a crash while it was written): ignored, the state is the one before it",
				"file", st.jr.journalPath(), "byte", st.jr.tornAt)
		}
		if st.jr.migrated {
			t.a.log.Info("tail-capture state of version 1 read: migrated to a snapshot and a journal at the first save", "file", st.jr.snapPath())
		}
		t.st = st
		if fresh {
			t.st.NextSeq = 0
		}
	}
	if t.id.ClusterID == "" {
		var errs []error
		for _, d := range t.a.cfg.LogDirs {
			id, err := t.a.identity(d)
			if err == nil {
				t.id = id
				break
			}
			errs = append(errs, err)
		}
		if t.id.ClusterID == "" {
			return errors.Join(append(errs, errors.New("no log dir identifies the broker"))...)
		}
	}
	if t.st.Pending != nil {
		if err := t.settlePending(ctx); err != nil {
			t.fail("resolve", err, "key", t.st.Pending.ManifestKey)
			return err
		}
	}
	// The seq continues above the bucket's, even when the state says less
	// (a state dir older than the bucket: a restored disk or VM snapshot),
	// as restore orders one broker's captures by seq. One listing of the
	// broker's tails per start.
	seq, err := t.highestSeq(ctx)
	if err != nil {
		t.fail("resolve", err)
		return err
	}
	if t.st.NextSeq <= seq {
		if t.st.NextSeq >= 1 {
			t.a.log.Warn("tail-capture state is older than the bucket: its capture seq continues after the bucket's", "state_next_seq", t.st.NextSeq, "bucket_seq", seq)
		}
		t.st.NextSeq = seq + 1
		if err := t.st.save(false); err != nil { // lost: taken from the bucket again
			t.fail("state", err)
			return err
		}
	}
	t.init = true
	return nil
}

// highestSeq is the highest tail seq of this broker in the bucket, 0 if none.
func (t *tailer) highestSeq(ctx context.Context) (int64, error) {
	prefix := t.a.layout.BrokerPrefixV2(t.id.ClusterID, t.id.BrokerID) + "tails/"
	var hi int64
	err := t.a.store.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
		name := strings.TrimPrefix(oi.Key, prefix)
		if s, _, ok := strings.Cut(name, "-"); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > hi {
				hi = n
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	return hi, nil
}

// settlePending decides whether the pending capture committed: an abandon
// marker is created at its manifest key; an existing manifest there with
// captures is the commit, and its tracks are adopted.
func (t *tailer) settlePending(ctx context.Context) error {
	p := t.st.Pending
	mark := archive.TailManifest{Format: archive.TailManifestFormat, Version: archive.ManifestVersionV2, ClusterID: p.ClusterID,
		BrokerID: p.BrokerID, Seq: p.Seq, UploadID: p.UploadID, CapturedAt: time.Now().UTC(), Agent: "segvault " + t.a.version,
		Captures: []archive.TailCapture{}}
	data, err := json.Marshal(mark)
	if err != nil {
		return err
	}
	t.a.metrics.TailPuts.Inc()
	err = t.a.store.PutManifest(ctx, p.ManifestKey, data)
	committed := false
	switch {
	case err == nil:
	case errors.Is(err, uploader.ErrConflict):
		body, gerr := t.a.store.Get(ctx, p.ManifestKey, archive.MaxTailManifestSize)
		if gerr != nil {
			return fmt.Errorf("read %s: %w", p.ManifestKey, gerr)
		}
		m, derr := archive.DecodeTailManifest(p.ManifestKey, body)
		if derr != nil {
			return derr
		}
		committed = len(m.Captures) > 0 && m.UploadID == p.UploadID
	default:
		return fmt.Errorf("settle pending tail capture %s: %w", p.ManifestKey, err)
	}
	if committed {
		t.st.adopt()
		t.a.log.Info("tail capture interrupted after its commit: adopted", "key", p.ManifestKey)
	} else {
		t.a.log.Info("tail capture interrupted before its commit: abandoned (its pack, if any, is an orphan never read)", "key", p.ManifestKey, "pack", p.PackKey)
	}
	if p.Seq >= t.st.NextSeq {
		t.st.NextSeq = p.Seq + 1
	}
	t.st.abandon()          // no-op once adopted
	return t.st.save(false) // lost: settled again (idempotent)
}

// since is the time of the last round (the start before the first).
func (t *tailer) since() time.Time {
	if t.lastRound.IsZero() {
		return t.start
	}
	return t.lastRound
}

// logPath is the track's active segment file.
func (tr *tailTrack) logPath() string {
	return filepath.Join(tr.Path, segment.FormatName(tr.Base, segment.KindLog))
}

// scan updates the tracks to the partitions' current active segments. A
// segment that rolled stops being captured (the rolled segment is archived
// as a whole); its successor is tracked from byte 0.
func (t *tailer) scan(now time.Time) (changed bool) {
	cfg := t.a.snap()
	seen := map[string]bool{}
	failedDirs := map[string]bool{}
	for _, dir := range t.a.cfg.LogDirs {
		scans, failed, err := scanLogDirIsolated(dir, cfg.filter, false)
		if err != nil {
			failedDirs[dir] = true
			t.fail("scan", err, "file", dir)
			continue
		}
		for p, err := range failed {
			failedDirs[p] = true
			t.fail("scan", err, "file", p)
		}
		for _, ps := range scans {
			if ps.Active < 0 {
				continue
			}
			key := ps.Path
			seen[key] = true
			rt := t.rt[key]
			if rt == nil {
				rt = &tailRuntime{readSize: -1, dn: ps.Dir}
				t.rt[key] = rt
				rt.pendingSince = t.since() // unknown until read: as old as our last look
			}
			tr := t.st.Tracks[key]
			switch {
			case tr == nil:
				tr = &tailTrack{LogDir: ps.LogDir, Path: ps.Path, Topic: ps.Dir.Topic, Partition: ps.Dir.Partition}
				tr.reset(ps.Active, 0)
				t.st.setTrack(key, tr)
				changed = true
			case tr.Base != ps.Active:
				c := candidate{LogDir: tr.LogDir, Dir: ps.Dir, Kind: "segment", Base: tr.Base}
				if tr.Base < ps.Active { // rolled: archived as a whole from now on
					t.rolled[c.key()] = rolledSeg{since: rt.pendingSince, at: now}
				}
				t.a.log.Debug("active segment rolled; tail capture moves to the new one", "file", tr.logPath(), "new_base", ps.Active)
				nt := tr.clone()
				nt.reset(ps.Active, 0)
				t.st.setTrack(key, nt)
				rt.readSize, rt.readMTime = -1, time.Time{}
				rt.pendingSince = t.since()
				changed = true
			}
		}
	}
	for k, tr := range t.st.Tracks {
		if seen[k] || failedDirs[tr.LogDir] || failedDirs[tr.Path] {
			continue
		}
		t.st.dropTrack(k) // partition gone (deleted, moved) or filtered out
		delete(t.rt, k)
		changed = true
	}
	return changed
}

// capture is one partition's new bytes read this round.
type capture struct {
	key      string
	after    *tailTrack // the track once committed
	from     int64
	prevSum  string
	raw      []byte
	first    int64
	last     int64
	maxTs    int64
	epoch    int32
	state    *archive.PartitionState
	clean    bool // read to the end of the file (or to its preallocated zeros)
	torn     bool // stopped at a batch still being written
	size     int64
	mtime    time.Time
	readTime time.Time
}

// readTrack reads the active segment of tr from To, politely, keeping
// whole batches that pass their CRC, up to budget bytes. It restarts the
// chain when the captured prefix no longer matches the file. next is the
// track to keep (changed when a restart happened); cp is nil when there is
// nothing new to capture.
func (t *tailer) readTrack(ctx context.Context, key string, tr *tailTrack, budget int64) (next *tailTrack, cp *capture, err error) {
	p := tr.logPath()
	f, err := fsutil.OpenRegular(p)
	if errors.Is(err, fs.ErrNotExist) {
		return tr, nil, nil // rolled and deleted, or the partition is going: the next scan says
	}
	if err != nil {
		return tr, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return tr, nil, err
	}
	size := fi.Size()
	var ino uint64
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = s.Ino
	}
	readTime := time.Now()
	nt := tr.clone()
	reason := ""
	switch {
	case tr.Ino != 0 && ino != tr.Ino:
		reason = "inode"
	case size < tr.To:
		reason = "truncated"
	case tr.To > 0:
		if ok, err := hdrMatches(f, 0, tr.FirstHdr); err != nil {
			return tr, nil, err
		} else if !ok {
			reason = "rewritten"
		} else if ok, err := hdrMatches(f, tr.LastPos, tr.LastHdr); err != nil {
			return tr, nil, err
		} else if !ok {
			reason = "rewritten"
		}
	}
	if reason != "" {
		t.a.metrics.TailRestarts.WithLabelValues(reason).Inc()
		t.a.log.Warn("active segment no longer holds the captured bytes (truncation, rewrite or a new file): capturing it again from byte 0; the earlier captures are superseded",
			"file", p, "reason", reason, "captured_to", tr.To, "size", size, "inode", ino)
		nt.reset(tr.Base, ino)
	}
	nt.Ino = ino
	rt := t.rt[key]
	cp = &capture{key: key, from: nt.To, prevSum: nt.Sum, first: -1, last: -1, maxTs: -1, epoch: -1, size: size, mtime: fi.ModTime(), readTime: readTime}
	if size == nt.To {
		cp.clean = true
		t.noteRead(rt, cp)
		return nt, nil, nil
	}
	var res residency
	if t.a.snap().DropCache {
		res = residentPages(f, size)
	}
	from := nt.To
	rd := segment.NewReader(t.a.limitRead(ctx, io.NewSectionReader(f, from, size-from)), size-from, p,
		segment.ReaderOptions{BaseOffset: nt.Base, BufferSize: 256 << 10})
	var buf bytes.Buffer
	stopped := ""
	for rd.Next() {
		b := rd.Batch()
		raw := rd.Raw()
		if cp.first < 0 && nt.LastOffset >= 0 && b.BaseOffset <= nt.LastOffset {
			// Offsets went back at the captured end: the prefix changed in
			// a way the headers did not show. Start over next round.
			t.a.metrics.TailRestarts.WithLabelValues("offsets").Inc()
			t.a.log.Warn("active segment's offsets go back after the captured bytes: capturing it again from byte 0",
				"file", p, "byte", from+b.Pos, "base_offset", b.BaseOffset, "captured_last_offset", nt.LastOffset)
			nt.reset(tr.Base, ino)
			return nt, nil, nil
		}
		if cp.first < 0 {
			cp.first = b.BaseOffset
			if from == 0 {
				nt.FirstHdr = hex.EncodeToString(raw[:min(tailHdrLen, len(raw))])
			}
		}
		buf.Write(raw)
		cp.last = b.LastOffset()
		cp.maxTs = max(cp.maxTs, b.MaxTimestamp)
		cp.epoch = b.PartitionLeaderEpoch
		nt.LastPos = from + b.Pos
		nt.LastHdr = hex.EncodeToString(raw[:min(tailHdrLen, len(raw))])
		nt.LastOffset, nt.LastEpoch = b.LastOffset(), b.PartitionLeaderEpoch
		if int64(buf.Len()) >= budget {
			stopped = "budget"
			break
		}
	}
	if t.a.snap().DropCache {
		if n := dropNewPages(f, res); n > 0 {
			t.a.metrics.PagesDropped.Add(float64(n))
		}
	}
	end := from + int64(buf.Len())
	if err := rd.Err(); err != nil && stopped == "" {
		var ce *segment.CorruptionError
		switch {
		case segment.IsTruncated(err):
			cp.torn = true // a batch being written: the next capture takes it
		case errors.As(err, &ce) && zeroFrom(f, end):
			cp.clean = true // preallocated space (preallocate=true): the end of the data
		case errors.As(err, &ce):
			stopped = "invalid_batch"
			if t.warned[key] != end {
				t.warned[key] = end
				t.a.log.Warn("active segment holds an invalid batch: captured up to it; the rest waits (the broker may still be writing it, or the file is damaged)",
					"file", p, "byte", end, "err", err)
			}
		default:
			return tr, nil, err
		}
	} else if stopped == "" {
		cp.clean = true
	}
	if stopped != "" {
		t.a.metrics.TailSkipped.WithLabelValues(stopped).Inc()
		if stopped == "budget" {
			t.backlog = true
		}
	}
	if buf.Len() == 0 {
		t.noteRead(rt, cp)
		return nt, nil, nil
	}
	// Check again that the file still is the one read: the same inode, at
	// least as long, the last batch read still in place.
	if fi2, err := f.Stat(); err == nil {
		s2, _ := fi2.Sys().(*syscall.Stat_t)
		ok, herr := hdrMatches(f, nt.LastPos, nt.LastHdr)
		if herr != nil || !ok || fi2.Size() < end || (s2 != nil && s2.Ino != ino) {
			t.a.metrics.TailSkipped.WithLabelValues("changed_while_read").Inc()
			t.a.log.Info("active segment changed while it was read; captured next round", "file", p)
			if reason != "" {
				return nt, nil, nil
			}
			return tr, nil, nil
		}
	}
	h, err := nt.hasher()
	if err != nil {
		nt.reset(tr.Base, ino)
		return nt, nil, nil
	}
	h.Write(buf.Bytes())
	nt.To = end
	if err := nt.setHash(h); err != nil {
		return tr, nil, err
	}
	cp.raw = buf.Bytes()
	cp.epoch = nt.LastEpoch
	cp.after = nt
	cp.state, nt.StateSum = t.partitionState(nt, from == 0)
	return nt, cp, nil
}

// noteRead records what a read saw (no capture needed or possible).
func (t *tailer) noteRead(rt *tailRuntime, cp *capture) {
	if rt == nil {
		return
	}
	rt.readSize, rt.readMTime = cp.size, cp.mtime
	switch {
	case cp.clean:
		rt.pendingSince = time.Time{}
	case cp.torn:
		// Only the batch being written is left: it started about now.
		if cp.raw != nil || rt.pendingSince.IsZero() {
			rt.pendingSince = cp.readTime
		}
	case rt.pendingSince.IsZero():
		rt.pendingSince = cp.readTime
	}
}

// partitionState returns the partition-dir files restore needs (as rolled
// segments' manifests carry them) when this chain has not sent them yet or
// they changed since; and their digest.
func (t *tailer) partitionState(tr *tailTrack, newChain bool) (*archive.PartitionState, string) {
	ps := &archive.PartitionState{CapturedAt: time.Now().UTC()}
	read := func(name string) []byte {
		b, err := fsutil.ReadFileRegular(filepath.Join(tr.Path, name))
		if err != nil || len(b) > 1<<20 {
			return nil
		}
		if b == nil {
			b = []byte{}
		}
		return b
	}
	ps.LeaderEpochCheckpoint = read(index.LeaderEpochCheckpointFile)
	ps.PartitionMetadata = read(index.PartitionMetadataFile)
	if tr.Topic == MetadataTopic {
		ps.QuorumState = read("quorum-state")
	}
	h := sha256.New()
	for _, b := range [][]byte{ps.LeaderEpochCheckpoint, ps.PartitionMetadata, ps.QuorumState} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if !newChain && sum == tr.StateSum {
		return nil, sum
	}
	return ps, sum
}

// tailTopicID is a partition's topic id (partition.metadata), as rolled
// segments record it.
func tailTopicID(tr *tailTrack) string {
	if tr.Topic == MetadataTopic {
		return MetadataTopicID
	}
	p := filepath.Join(tr.Path, index.PartitionMetadataFile)
	data, err := fsutil.ReadFileRegular(p)
	if err != nil {
		return archive.NoTopicID
	}
	id, err := index.ParsePartitionMetadata(p, data)
	if err != nil {
		return archive.NoTopicID
	}
	return id
}

// hdrMatches reports whether the file holds hexHdr at pos.
func hdrMatches(f *os.File, pos int64, hexHdr string) (bool, error) {
	want, err := hex.DecodeString(hexHdr)
	if err != nil || len(want) == 0 {
		return len(want) == 0 && err == nil, nil
	}
	got := make([]byte, len(want))
	n, err := f.ReadAt(got, pos)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s at byte %d: %w", f.Name(), pos, err)
	}
	return n == len(want) && bytes.Equal(got, want), nil
}

// zeroFrom reports whether the file holds only zero bytes in the first
// batch header's worth from pos (preallocated, never written).
func zeroFrom(f *os.File, pos int64) bool {
	b := make([]byte, 17)
	n, _ := f.ReadAt(b, pos)
	return n == len(b) && bytes.Equal(b, make([]byte, len(b)))
}

// packBudget is the raw bytes one round packs at most (the rest waits for
// the next round, which comes soon): memory stays bounded after a long
// outage or on the first capture of large active segments.
func packBudget(cfg *snapshot) int64 { return max(2*cfg.tailMaxBytes(), 8<<20) }

// round is one capture round.
func (t *tailer) round(ctx context.Context) {
	now := time.Now()
	defer func() { t.lastRound = now; t.updateRPO(time.Now()) }()
	if !t.init {
		if err := t.setup(ctx); err != nil {
			return
		}
	} else if t.st.Pending != nil {
		if err := t.settlePending(ctx); err != nil {
			t.fail("resolve", err, "key", t.st.Pending.ManifestKey)
			return
		}
	}
	cfg := t.a.snap()
	changed := t.scan(now)
	t.backlog = false
	keys := make([]string, 0, len(t.st.Tracks))
	for k := range t.st.Tracks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	budget := packBudget(cfg)
	var caps []*capture
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		if budget <= 0 {
			t.backlog = true
			t.a.metrics.TailSkipped.WithLabelValues("budget").Inc()
			t.a.log.Info("tail capture round full; the remaining partitions are read in the next round, in a few seconds",
				"partitions_left", len(keys)-len(caps), "budget_bytes", packBudget(cfg))
			break
		}
		tr := t.st.Tracks[k]
		if t.a.tailStandby(tr.Path) {
			// Another replica captures this partition's tail: not read.
			if t.standby == nil {
				t.standby = map[string]bool{}
			}
			t.standby[k] = true
			if rt := t.rt[k]; rt != nil {
				rt.pendingSince = time.Time{}
			}
			t.a.metrics.TailSkipped.WithLabelValues("standby").Inc()
			continue
		}
		delete(t.standby, k)
		nt, cp, err := t.readTrack(ctx, k, tr, budget)
		if err != nil {
			t.fail("read", err, "file", tr.logPath())
			continue
		}
		if cp == nil {
			if nt != tr && !nt.same(tr) {
				t.st.setTrack(k, nt) // a chain restart with nothing to send yet
				changed = true
			}
			continue
		}
		budget -= int64(len(cp.raw))
		caps = append(caps, cp)
	}
	if len(caps) == 0 {
		if changed {
			if err := t.st.save(true); err != nil {
				t.fail("state", err)
			}
		}
		return
	}
	if err := t.commit(ctx, caps, now); err != nil {
		return
	}
}

// commit packs the captures, writes the pack then the manifest, and
// advances the tracks.
func (t *tailer) commit(ctx context.Context, caps []*capture, at time.Time) error {
	cfg := t.a.snap()
	comp, level := tailCompression(cfg)
	var pack []byte
	m := archive.TailManifest{Format: archive.TailManifestFormat, Version: archive.ManifestVersionV2, ClusterID: t.id.ClusterID,
		BrokerID: t.id.BrokerID, CapturedAt: at.UTC(), Agent: "segvault " + t.a.version}
	var raw int64
	for _, cp := range caps {
		tc := archive.TailCapture{LogDir: cp.after.LogDir, Topic: cp.after.Topic, Partition: cp.after.Partition,
			TopicID: tailTopicID(cp.after), SegmentBase: cp.after.Base, From: cp.from, To: cp.after.To, PrevSHA256: cp.prevSum,
			SHA256: cp.after.Sum, FirstOffset: cp.first, LastOffset: cp.last, MaxTimestamp: cp.maxTs, LastEpoch: cp.epoch,
			PartitionState: cp.state}
		for off := 0; off < len(cp.raw); off += archive.DefaultChunkSize {
			piece := cp.raw[off:min(off+archive.DefaultChunkSize, len(cp.raw))]
			start := len(pack)
			var ch archive.Chunk
			var err error
			pack, ch, err = t.codec.EncodeChunk(pack, piece, comp, level, cfg.EncryptionKey)
			if err == nil && cfg.Compression == "auto" && comp == archive.CompressionZstd && ch.StoredSize*10 > int64(len(piece))*9 {
				pack, ch, err = t.codec.EncodeChunk(pack[:start], piece, archive.CompressionNone, 0, cfg.EncryptionKey)
			}
			if err != nil {
				t.fail("pack", err, "file", cp.after.logPath())
				return err
			}
			ch.Key, ch.Offset = "", int64(start)
			tc.Chunks = append(tc.Chunks, ch)
		}
		raw += int64(len(cp.raw))
		m.Captures = append(m.Captures, tc)
	}
	seq := t.st.NextSeq
	uid := newUploadID()
	m.Seq, m.UploadID = seq, uid
	m.PackKey = t.a.layout.TailPackKey(t.id.ClusterID, t.id.BrokerID, seq, uid)
	m.PackSize = int64(len(pack))
	mkey := t.a.layout.TailManifestKey(t.id.ClusterID, t.id.BrokerID, seq, uid)
	data, err := json.Marshal(m) // compact: per capture, the manifest is most of the cost of a light partition
	if err != nil {
		return err
	}
	p := &tailPending{Seq: seq, UploadID: uid, ManifestKey: mkey, PackKey: m.PackKey, ClusterID: t.id.ClusterID,
		BrokerID: t.id.BrokerID, Tracks: map[string]*tailTrack{}}
	for _, cp := range caps {
		p.Tracks[cp.key] = cp.after
	}
	t.st.begin(p)
	t.st.NextSeq = seq + 1
	// The one fsync of the round: the pending capture is durable before
	// its pack and manifest are written.
	if err := t.st.save(true); err != nil {
		t.st.abandon()
		t.fail("state", err)
		return err
	}
	t.a.metrics.TailPuts.Inc()
	if err := t.a.store.PutManifest(ctx, m.PackKey, pack); err != nil {
		// The manifest was never sent: nothing can have committed.
		t.st.abandon()
		if serr := t.st.save(false); serr != nil { // lost: abandoned again
			t.fail("state", serr)
		}
		t.fail("pack", err, "key", m.PackKey)
		return err
	}
	t.a.metrics.TailPuts.Inc()
	if err := t.a.store.PutManifest(ctx, mkey, data); err != nil {
		// It may have committed: the next round settles it first.
		t.fail("manifest", err, "key", mkey)
		return err
	}
	t.st.adopt()
	// Not fsynced: lost, the capture is settled from the bucket on the
	// next start; the next round's fsync covers it.
	if err := t.st.save(false); err != nil {
		t.fail("state", err) // settled from the bucket on the next start
	}
	for _, cp := range caps {
		t.noteRead(t.rt[cp.key], cp)
	}
	t.a.metrics.TailCaptures.Inc()
	t.a.metrics.TailBytes.Add(float64(raw))
	t.a.metrics.TailStoredBytes.Add(float64(len(pack) + len(data)))
	t.a.log.Info("tail captured", "key", mkey, "partitions", len(caps), "bytes", raw, "stored_bytes", len(pack))
	return nil
}

// tailCompression maps the agent's compression options to the chunk codec's.
func tailCompression(cfg *snapshot) (string, int) {
	if cfg.Compression == "none" {
		return archive.CompressionNone, 0
	}
	levels := map[int]int{1: 1, 2: 3, 3: 7, 4: 11}
	l := levels[cfg.ZstdLevel]
	if l == 0 {
		l = 1
	}
	return archive.CompressionZstd, l
}

// newUploadID is a random 16-hex id for one capture attempt.
func newUploadID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%016x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}

// observe stats every tracked active segment (no read) and returns the
// bytes appended since the last capture; it notes when new bytes appear.
func (t *tailer) observe(now time.Time) int64 {
	if t.st == nil {
		return 0
	}
	var acc int64
	prev := t.lastObs
	if prev.IsZero() {
		prev = t.lastRound
	}
	for k, tr := range t.st.Tracks {
		fi, err := os.Stat(tr.logPath())
		if err != nil {
			continue
		}
		rt := t.rt[k]
		if t.standby[k] {
			continue // captured by the designated archiver
		}
		if t.observeOnly && rt != nil {
			// Nothing is ever captured: every byte of the active
			// segment waits for its roll, since it was first seen.
			if fi.Size() == 0 {
				rt.pendingSince = time.Time{}
			} else if rt.pendingSince.IsZero() {
				rt.pendingSince = prev
			}
			continue
		}
		// Growth since the last read (a preallocated file does not grow:
		// its captures come every interval).
		switch {
		case rt != nil && rt.readSize >= 0:
			acc += max(0, fi.Size()-rt.readSize)
		case fi.Size() > tr.To:
			acc += fi.Size() - tr.To
		}
		if rt == nil {
			continue
		}
		if (fi.Size() != rt.readSize || !fi.ModTime().Equal(rt.readMTime)) && rt.pendingSince.IsZero() {
			rt.pendingSince = prev
		}
	}
	t.lastObs = now
	t.updateRPO(now)
	return acc
}

// rolledSeg is a segment that rolled while tracked: since when its bytes
// were not all captured (zero: all were), and when the roll was seen.
type rolledSeg struct{ since, at time.Time }

// updateRPO publishes segvault_agent_rpo_seconds: the age of the oldest
// byte neither captured nor in an archived rolled segment.
func (t *tailer) updateRPO(now time.Time) {
	var oldest time.Time
	note := func(ts time.Time) {
		if !ts.IsZero() && (oldest.IsZero() || ts.Before(oldest)) {
			oldest = ts
		}
	}
	if !t.init {
		// No round got past its setup (bucket unreachable since the
		// start, a pending capture not settled): nothing was captured
		// since the agent started, whatever the partitions hold.
		note(t.start)
	}
	for _, rt := range t.rt {
		note(rt.pendingSince)
	}
	for k := range t.rolled {
		if _, ok := t.a.state.Get(k); ok {
			delete(t.rolled, k) // archived (or recorded lost or corrupt)
		}
	}
	t.a.mu.Lock()
	stale := 3*t.a.snap().ScanInterval + time.Minute
	for k, r := range t.rolled {
		if _, ok := t.a.seen[k]; !ok && now.Sub(r.at) > stale {
			delete(t.rolled, k) // no pass took it up: another replica archives it, or it is gone
		}
	}
	for k, o := range t.a.seen {
		if r, ok := t.rolled[k]; ok {
			note(r.since) // zero: every byte was captured before the roll
			continue
		}
		note(o.first)
	}
	t.a.mu.Unlock()
	if oldest.IsZero() {
		t.a.metrics.RPOSeconds.Set(0)
		return
	}
	t.a.metrics.RPOSeconds.Set(max(0, now.Sub(oldest).Seconds()))
}
