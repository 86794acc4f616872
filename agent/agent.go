package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/fsutil"

	"golang.org/x/time/rate"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// Archive is what the agent needs from the store. NewArchive adapts an
// uploader.Bucket; tests may wrap it to inject faults.
type Archive interface {
	// PutFile uploads size bytes from src at key (create-only, identical
	// content is success) and returns the raw and stored digests.
	PutFile(ctx context.Context, key string, src io.Reader, size int64) (archive.FileRecord, error)
	// PutManifest creates a small object (create-only; identical is
	// success; different content is uploader.ErrConflict).
	PutManifest(ctx context.Context, key string, data []byte) error
	// Exists reports whether key is in the bucket.
	Exists(ctx context.Context, key string) (bool, error)
	// List calls fn for each key under prefix.
	List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error
	// Get reads a small object whole.
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	// Delete removes an uncommitted data object (archive.Commit's cleanup).
	Delete(ctx context.Context, key string) error
}

// Agent archives the rolled segments of a broker's log dirs.
type Agent struct {
	cfg     Config
	store   Archive
	layout  archive.Layout
	log     *slog.Logger
	metrics *Metrics
	version string
	live    atomic.Pointer[snapshot] // the reloadable configuration in force (snap)
	state   *State
	staging *staging
	limiter *rate.Limiter
	lock    *os.File // flock on the state dir

	// Shipping runs in the background, Concurrency at a time, so a pass
	// (scan, stage, dispatch) never waits for the bucket.
	slots    chan struct{}
	inflight map[string]bool
	retry    map[string]retryState // failed shipments wait before the next attempt
	wg       sync.WaitGroup
	done     PassReport    // outcomes of finished shipments, drained by takeDone
	kick     chan struct{} // a shipment finished
	// blockDispatch (RunOnce) makes a pass wait for free workers and ship
	// everything ready, instead of leaving the rest to the next pass.
	blockDispatch bool
	workCtx       context.Context

	mu               sync.Mutex
	seen             map[string]*observation // rolled candidates not yet archived
	ids              map[string]BrokerIdentity
	roots            map[string]rootCapture
	ready            bool
	cacheBlindWarned bool
	lastErr          error
	partPaths        map[string]bool  // partition dirs seen in the last scan
	failing          map[string]error // last error of segments whose shipment fails, for /readyz

	swaps map[string]*swapWatch // partition dirs with a log-cleaner swap in progress
	owner *ownership            // archive-replicas=designated (owner_agent.go)
}

type observation struct {
	c      candidate
	first  time.Time // when it was first seen rolled
	since  time.Time // when its current file identity was first seen
	staged bool
	warned bool // "not protected" logged once
	// waitNoted: the SettleWait was logged and counted.
	waitNoted bool
}

type rootCapture struct {
	hash string
	at   time.Time
}

// New prepares an agent: loads (or rebuilds) its state and staging.
func New(ctx context.Context, cfg Config, store Archive, log *slog.Logger, metrics *Metrics, version string) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	var err error
	if cfg.ServerProperties != "" && (len(cfg.LogDirs) == 0 || cfg.BrokerID < 0) {
		dirs, node, err := ReadServerProperties(cfg.ServerProperties)
		if err != nil {
			return nil, err
		}
		if len(cfg.LogDirs) == 0 {
			cfg.LogDirs = dirs
		}
		if cfg.BrokerID < 0 {
			cfg.BrokerID = node
		}
	}
	if cfg.LogDirs, err = resolveLogDirs(cfg.LogDirs); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, store: store, layout: archive.NewLayout(cfg.Prefix), log: log, metrics: metrics,
		version: version, seen: map[string]*observation{}, ids: map[string]BrokerIdentity{},
		roots: map[string]rootCapture{}, slots: make(chan struct{}, cfg.Concurrency), inflight: map[string]bool{}, retry: map[string]retryState{},
		kick: make(chan struct{}, 1), workCtx: context.Background(), failing: map[string]error{}}
	a.live.Store(newSnapshot(cfg))
	if cfg.ReadBytesPerS > 0 {
		a.limiter = rate.NewLimiter(rate.Limit(cfg.ReadBytesPerS), int(min(cfg.ReadBytesPerS, 4<<20)))
	}
	if cfg.LowPriority {
		if err := lowerPriority(); err != nil {
			log.Warn("could not lower CPU/I/O priority", "err", err)
		}
	}
	var fresh bool
	if a.lock, err = lockStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	if a.state, fresh, err = OpenState(cfg.StateDir); err != nil {
		a.lock.Close()
		return nil, err
	}
	if a.staging, err = newStaging(cfg.StateDir, cfg.StagingBudget); err != nil {
		a.state.Close()
		a.lock.Close()
		return nil, err
	}
	a.forgetFalseLost()
	if fresh {
		log.Info("rebuilding state from the bucket (new state dir): listing this broker's manifests")
		if err := a.rebuildState(ctx); err != nil {
			log.Warn("could not rebuild state from the bucket; segments will be re-checked against it one by one", "err", err)
		}
	}
	return a, nil
}

// LogDirs are the log dirs the agent archives (after server.properties).
func (a *Agent) LogDirs() []string { return a.cfg.LogDirs }

// Close flushes state and releases the state dir.
func (a *Agent) Close() error {
	// Background log-dir and gap-marker captures of the last pass (Pass
	// starts them and does not wait) finish before the state closes; a
	// drain that gave up already cancelled them, so the wait is short and
	// bounded.
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		a.log.Warn("closing with background captures still running (they were cancelled)")
	}
	err := a.state.Close()
	a.lock.Close()
	return err
}

// Ready reports whether the last pass completed (for /readyz), and the
// errors of the last pass and of every segment whose shipment is failing.
func (a *Agent) Ready() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := make([]string, 0, len(a.failing))
	for k := range a.failing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	errs := []error{a.lastErr}
	for _, k := range keys {
		errs = append(errs, fmt.Errorf("failing, will retry: %w", a.failing[k]))
	}
	return a.ready, errors.Join(errs...)
}

// identity returns (and caches) who wrote a log dir.
func (a *Agent) identity(logDir string) (BrokerIdentity, error) {
	a.mu.Lock()
	id, ok := a.ids[logDir]
	a.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := ReadIdentity(logDir, a.cfg.ClusterID, a.cfg.BrokerID)
	if err != nil {
		return id, err
	}
	a.mu.Lock()
	a.ids[logDir] = id
	a.mu.Unlock()
	return id, nil
}

// PassReport sums up one pass.
type PassReport struct {
	Partitions int
	Candidates int
	Started    int // shipments started by this pass
	Archived   int
	Already    int
	InState    int // rolled segments the local state already records as archived (not shipped again)
	Corrupt    int
	Lost       int
	Waiting    int // rolled but not settled yet, or waiting for a free worker
	Failed     int
	Truncated  int // active segments archived up to their last complete batch (torn tail)
	RawBytes   int64
	Stored     int64
	Errors     []error
}

// Pass scans every log dir once and ships what has settled. Errors are
// isolated: a log dir or partition dir that cannot be read is counted as a
// failure (rep.Failed, rep.Errors) and the rest is still archived; the
// segments already seen there are neither lost nor forgotten. Pass returns
// an error only when no log dir could be scanned at all.
func (a *Agent) Pass(ctx context.Context) (*PassReport, error) {
	start := time.Now()
	cfg := a.snap()
	rep := &PassReport{}
	var work []*observation
	live := map[string]bool{}
	parts := map[string]bool{}
	failedDirs := map[string]bool{} // log dirs and partition dirs not scanned
	var dirErrs []error
	fail := func(path string, err error) {
		failedDirs[path] = true
		rep.Failed++
		rep.Errors = append(rep.Errors, err)
		a.metrics.Failures.WithLabelValues("scan").Inc()
		a.log.Error("scan failed; will retry", "file", path, "err", err)
	}
	swaps := map[string]partitionScan{}
	for _, dir := range a.cfg.LogDirs {
		id, err := a.identity(dir)
		if err != nil {
			dirErrs = append(dirErrs, err)
			fail(dir, err)
			continue
		}
		if a.cfg.IncludeActive {
			if held, err := brokerHoldsLock(dir); err != nil || held {
				err := fmt.Errorf("%s: refusing to archive active segments: a broker holds the log dir's .lock (or it cannot be checked: %v)", dir, err)
				dirErrs = append(dirErrs, err)
				fail(dir, err)
				continue
			}
		}
		scans, failed, err := scanLogDirIsolated(dir, cfg.filter, a.cfg.IncludeActive)
		if err != nil {
			err = fmt.Errorf("%s: %w", dir, err)
			dirErrs = append(dirErrs, err)
			fail(dir, err)
			continue
		}
		for path, err := range failed {
			fail(path, err)
		}
		rep.Partitions += len(scans)
		for _, ps := range scans {
			parts[ps.Path] = true
			if ps.Unstable != "" {
				swaps[ps.Path] = ps
			}
			keep := a.replicaFilter(ctx, ps, id, start) // nil: all (archive-replicas)
			for i := range ps.Candidates {
				c := ps.Candidates[i]
				if keep != nil && !keep(&c) {
					continue // another replica archives it
				}
				live[c.key()] = true
				if o := a.consider(&c, start); o != nil {
					work = append(work, o)
				} else {
					rep.InState++
				}
			}
		}
		if ctx.Err() == nil { // stopped: start nothing new
			a.captureRootAsync(dir, id)
		}
	}
	if len(dirErrs) == len(a.cfg.LogDirs) && len(dirErrs) > 0 {
		return rep, errors.Join(dirErrs...)
	}
	a.noteSwaps(swaps, start)
	a.noteRoles(parts, len(failedDirs) > 0) // owner_diverge.go
	// What was seen in a dir that could not be scanned now is still there
	// as far as we know: keep it (neither lost nor forgotten).
	if len(failedDirs) > 0 {
		a.mu.Lock()
		for k, o := range a.seen {
			if failedDirs[o.c.DirPath] || failedDirs[o.c.LogDir] {
				live[k] = true
			}
		}
		a.mu.Unlock()
	}
	// Staged segments whose originals Kafka deleted still get archived.
	for _, c := range a.staging.orphans() {
		c := c
		if live[c.key()] || !cfg.filter.match(c.Dir.Topic) {
			continue
		}
		live[c.key()] = true
		if o := a.consider(&c, start); o != nil {
			o.since = time.Time{} // files no longer change
			work = append(work, o)
		}
	}
	rep.Lost += a.detectLost(ctx, live)
	a.retryGapsAsync()
	a.mu.Lock()
	a.partPaths = parts
	a.mu.Unlock()
	a.metrics.Partitions.Set(float64(rep.Partitions))

	sort.Slice(work, func(i, j int) bool { return work[i].c.key() < work[j].c.key() })
	rep.Candidates = len(work)
	// Protect every rolled, unarchived segment from retention now, before
	// any upload: a pass may block on an unreachable bucket for long.
	for _, o := range work {
		a.protect(o)
	}
	var ready []*observation
	for _, o := range work {
		if a.settled(o, start) {
			ready = append(ready, o)
		} else {
			rep.Waiting++
		}
	}
	a.updateLag(start)
	a.dispatch(ctx, ready, rep)
	a.metrics.ScanSeconds.Observe(time.Since(start).Seconds())
	a.metrics.StagedBytes.Set(float64(a.staging.Used()))
	a.mu.Lock()
	a.ready, a.lastErr = true, errors.Join(rep.Errors...)
	a.mu.Unlock()
	a.metrics.Ready.Set(1)
	return rep, nil
}

// consider returns the observation for a rolled candidate that still needs
// archiving, or nil when state says this exact version is done.
func (a *Agent) consider(c *candidate, now time.Time) *observation {
	if e, ok := a.state.Get(c.key()); ok && sameFiles(e.Files, c.Files) {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.seen[c.key()]
	switch {
	case o == nil:
		o = &observation{c: *c, first: now, since: now}
		a.seen[c.key()] = o
	case !sameFiles(o.c.Files, c.Files):
		o.c, o.since = *c, now
	}
	return o
}

// settled: a rolled segment is shipped once its files have not changed for
// SettleTime (by mtime, or by identical observations that far apart). One
// whose indexes did not settle (SettleWait) is shipped without them once it
// has been seen for settleTimeout; the wait is logged once and counted.
func (a *Agent) settled(o *observation, now time.Time) bool {
	settle := a.snap().SettleTime
	if o.c.SettleWait != "" {
		a.mu.Lock()
		first := !o.waitNoted
		o.waitNoted = true
		a.mu.Unlock()
		if first {
			a.metrics.SettleWaits.WithLabelValues(o.c.SettleWait).Inc()
			a.log.Info("rolled segment's index has not settled; archiving it without that index after a bounded wait (restore rebuilds it as Kafka's recovery does)",
				"file", o.c.path(o.c.Files[0].Name), "reason", o.c.SettleWait, "wait", a.settleTimeout())
		}
		if now.Sub(o.first) < a.settleTimeout() {
			return false
		}
	}
	if settle == 0 || o.since.IsZero() {
		return true
	}
	newest := time.Time{}
	for _, f := range o.c.Files {
		if f.MTime.After(newest) {
			newest = f.MTime
		}
	}
	return now.Sub(newest) >= settle || now.Sub(o.since) >= settle
}

// settleTimeout bounds the wait for files that do not settle (an index
// with a zero-filled tail): three scan intervals, at least SettleTime. For
// a stopped broker (IncludeActive, its .lock checked) nothing will change:
// no wait.
func (a *Agent) settleTimeout() time.Duration {
	if a.cfg.IncludeActive {
		return 0
	}
	cfg := a.snap()
	return max(3*cfg.ScanInterval, cfg.SettleTime)
}

// noteSwaps tracks partitions with a log-cleaner swap in progress: one that
// persists for settleTimeout is reported once (WARN and the
// cleaner_swap_pending gauge); the gauge is cleared when it is gone.
func (a *Agent) noteSwaps(now map[string]partitionScan, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.swaps == nil {
		a.swaps = map[string]*swapWatch{}
	}
	for p, w := range a.swaps {
		if _, ok := now[p]; !ok {
			if w.reported {
				a.metrics.CleanerSwapPending.DeleteLabelValues(w.topic, w.partition)
				a.log.Info("log-cleaner swap finished", "file", p)
			}
			delete(a.swaps, p)
		}
	}
	for p, ps := range now {
		w := a.swaps[p]
		if w == nil {
			w = &swapWatch{since: at, topic: ps.Dir.Topic, partition: strconv.Itoa(int(ps.Dir.Partition))}
			a.swaps[p] = w
		}
		if a.cfg.IncludeActive && !w.reported {
			w.reported = true
			a.metrics.CleanerSwapPending.WithLabelValues(w.topic, w.partition).Set(1)
			a.log.Warn("interrupted log-cleaner swap: archiving what Kafka's log loader would load", "file", p, "detail", ps.Unstable)
			continue
		}
		if !w.reported && at.Sub(w.since) >= max(3*a.snap().ScanInterval, a.snap().SettleTime) {
			w.reported = true
			a.metrics.CleanerSwapPending.WithLabelValues(w.topic, w.partition).Set(1)
			a.log.Warn("log-cleaner swap pending for long; the segments it covers wait, the others are archived", "file", p,
				"detail", ps.Unstable, "since", w.since)
		}
	}
}

// swapWatch is a partition with a log-cleaner swap in progress.
type swapWatch struct {
	since            time.Time
	topic, partition string
	reported         bool
}

func sameFiles(x, y []fileStat) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i].Name != y[i].Name || x[i].Size != y[i].Size || !x[i].MTime.Equal(y[i].MTime) || (x[i].Ino != 0 && y[i].Ino != 0 && x[i].Ino != y[i].Ino) {
			return false
		}
	}
	return true
}

// dispatch starts a background shipment for each ready candidate that is
// not in flight, while a slot is free; the rest wait for a later pass.
func (a *Agent) dispatch(ctx context.Context, ready []*observation, rep *PassReport) {
	for _, o := range ready {
		if ctx.Err() != nil {
			return
		}
		key := o.c.key()
		a.mu.Lock()
		busy := a.inflight[key]
		rs := a.retry[key]
		a.mu.Unlock()
		if busy {
			continue
		}
		if time.Now().Before(rs.next) {
			rep.Waiting++
			continue
		}
		if a.blockDispatch { // RunOnce: wait for a free worker
			select {
			case a.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		} else {
			select {
			case a.slots <- struct{}{}:
			default:
				rep.Waiting++ // all workers busy: next pass
				continue
			}
		}
		a.mu.Lock()
		a.inflight[key] = true
		a.mu.Unlock()
		rep.Started++
		a.wg.Add(1)
		snap := *o // a later pass may update o while this ships
		go func() {
			defer a.wg.Done()
			a.metrics.InFlight.Inc()
			r, err := a.shipOne(a.workCtx, &snap)
			a.metrics.InFlight.Dec()
			a.mu.Lock()
			delete(a.inflight, key)
			d := &a.done
			if err != nil {
				d.Failed++
				d.Errors = append(d.Errors, err)
				n := a.retry[key].attempts
				a.retry[key] = retryState{attempts: n + 1, next: time.Now().Add(retryDelay(n))}
			} else {
				delete(a.retry, key)
				switch r.status {
				case statusArchived:
					d.Archived++
					if r.truncated {
						d.Truncated++
					}
					d.RawBytes += r.raw
					d.Stored += r.stored
				case statusCorrupt:
					d.Corrupt++
				case statusLost:
					d.Lost++
				default:
					d.Already++
				}
			}
			a.mu.Unlock()
			<-a.slots
			a.updateLag(time.Now())
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}()
	}
}

// givenUp counts shipments that failed maxOnceAttempts times (RunOnce).
func (a *Agent) givenUp() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for k, r := range a.retry {
		if r.attempts >= maxOnceAttempts && !a.inflight[k] {
			n++
		}
	}
	return n
}

// maxOnceAttempts is how often RunOnce tries a failing segment.
const maxOnceAttempts = 3

type retryState struct {
	attempts int
	next     time.Time
}

// retryDelay is the wait before retry n+1 of a failed shipment: 1s doubling
// to 5 minutes, with ±25% jitter so many partitions do not retry in step.
func retryDelay(n int) time.Duration {
	d := time.Second << min(n, 9)
	d = min(d, 5*time.Minute)
	return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// takeDone returns and resets the outcomes of finished shipments.
func (a *Agent) takeDone() PassReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.done
	a.done = PassReport{}
	return d
}

// startWork sets the context shipments run under: cancelling ctx stops new
// work at once and in-flight uploads after DrainTimeout. wait waits for
// every shipment to finish.
func (a *Agent) startWork(ctx context.Context) (wait func()) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.workCtx = work
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(a.cfg.DrainTimeout, cancel)
		<-work.Done()
		t.Stop()
	})
	return func() {
		a.wg.Wait()
		stop()
		cancel()
	}
}

// protect hard-links a candidate's files into staging once.
func (a *Agent) protect(o *observation) {
	if o.staged || a.staging.budget == 0 || o.c.fromSwap() {
		return // a salvaged swap (stopped broker): nothing will delete it
	}
	ok, why, err := a.staging.stage(&o.c)
	switch {
	case err != nil:
		a.log.Warn("staging failed", "file", o.c.DirPath, "base_offset", o.c.Base, "err", err)
	case !ok && !o.warned:
		a.log.Warn("segment not protected from retention", "file", o.c.DirPath, "base_offset", o.c.Base, "why", why)
		o.warned = true
	}
	o.staged = ok
}

// shipOne ships a candidate and records the outcome.
func (a *Agent) shipOne(ctx context.Context, o *observation) (shipResult, error) {
	c := &o.c
	log := a.log.With("topic", c.Dir.Topic, "partition", c.Dir.Partition, "base_offset", c.Base)
	id, err := a.identity(c.LogDir)
	if err != nil {
		return shipResult{}, err
	}
	r, err := a.ship(ctx, c, id, log)
	if errors.Is(err, errVanished) {
		// Only a file Kafka really deleted is lost: one that is there but
		// cannot be opened (permissions, EMFILE, EIO) is a failure.
		if gone, why := a.vanished(c); gone {
			if a.archivedAlready(c) {
				// Another shipment archived it (and unstaged it) before
				// Kafka deleted the file: nothing was lost.
				return shipResult{}, nil
			}
			a.recordLost(ctx, c, id, "deleted by Kafka before it was archived and not staged")
			return shipResult{status: statusLost}, nil
		} else if why != nil {
			err = why
		}
	}
	if err != nil {
		stage := "upload"
		switch {
		case errors.Is(err, uploader.ErrConflict):
			stage = "conflict"
			a.metrics.Conflicts.Inc()
		case errors.Is(err, errVanished) || a.localFileError(c, err):
			stage = "read"
		}
		a.metrics.Failures.WithLabelValues(stage).Inc()
		log.Error("archive failed; will retry", "stage", stage, "err", err)
		err = fmt.Errorf("%s base %d: %w", c.DirPath, c.Base, err)
		a.mu.Lock()
		a.failing[c.key()] = err
		a.mu.Unlock()
		return shipResult{}, err
	}
	a.mu.Lock()
	delete(a.failing, c.key())
	a.mu.Unlock()
	entry := stateEntry{Key: c.key(), Status: statusArchived, Files: c.Files, Manifest: r.manifest, At: time.Now().UTC()}
	switch r.status {
	case statusCorrupt:
		a.metrics.CorruptSegments.Inc()
		log.Error("segment failed validation; not archived", "err", r.detail)
		entry.Status, entry.Detail = statusCorrupt, r.detail
	case statusArchived:
		a.metrics.SegmentsArchived.Inc()
		a.metrics.BytesArchived.Add(float64(r.raw))
		a.metrics.BytesStored.Add(float64(r.stored))
		a.metrics.LastSuccess.SetToCurrentTime()
		a.metrics.RollToArchive.Observe(time.Since(o.first).Seconds())
		log.Info("archived", "key", r.manifest, "bytes", r.raw, "stored_bytes", r.stored)
		if r.truncated {
			a.metrics.TruncatedSegments.Inc()
			entry.Detail = "truncated to its last complete batch (torn tail)"
		}
	default:
		a.metrics.AlreadyInArchive.Inc()
		log.Debug("already archived", "key", r.manifest)
	}
	if err := a.state.Put(entry); err != nil {
		return r, err
	}
	// Forget it before unstaging: a concurrent pass that no longer finds it
	// (neither in the log dir nor staged) must not take it for lost.
	a.mu.Lock()
	delete(a.seen, c.key())
	a.mu.Unlock()
	a.staging.unstage(c)
	return r, nil
}

// detectLost finds rolled segments we saw but never archived that are gone
// from both the log dir and staging: data lost to retention. It records
// each once: state, metric, log and a gap marker in the bucket.
func (a *Agent) detectLost(ctx context.Context, live map[string]bool) int {
	a.mu.Lock()
	var gone []*observation
	for k, o := range a.seen {
		if !live[k] {
			gone = append(gone, o)
			delete(a.seen, k)
		}
	}
	a.mu.Unlock()
	n := 0
	for _, o := range gone {
		if gone, why := a.vanished(&o.c); !gone {
			if why != nil { // cannot tell (the dir is unreadable): look again next pass
				a.mu.Lock()
				if a.seen[o.c.key()] == nil {
					a.seen[o.c.key()] = o
				}
				a.mu.Unlock()
			} else {
				a.mu.Lock()
				delete(a.failing, o.c.key())
				a.mu.Unlock()
			}
			continue // still there: the dir was filtered, or Kafka renamed it .deleted
		}
		id, err := a.identity(o.c.LogDir)
		if err != nil {
			continue
		}
		if a.archivedAlready(&o.c) {
			continue
		}
		a.recordLost(ctx, &o.c, id, "deleted by Kafka (retention, truncation or topic deletion) before it was archived")
		n++
	}
	a.pruneState(live)
	return n
}

// vanished reports whether c's main file is really gone: no such file in
// the partition dir, no .deleted rename of it, no staged link. When a name
// is there but cannot be opened, or the lookup itself fails (EACCES on the
// dir, EIO), it is not gone and why says what failed.
func (a *Agent) vanished(c *candidate) (gone bool, why error) {
	name := c.Files[0].Name
	for _, p := range []string{c.path(name), c.path(name + segment.SuffixDeleted), a.staging.path(c, name)} {
		if p == "" {
			continue
		}
		_, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		f, err := fsutil.OpenRegular(p)
		if err != nil {
			return false, err
		}
		f.Close()
		return false, nil
	}
	return true, nil
}

// localFileError: err is about one of c's files on local disk (open, read,
// stat), not about the bucket.
func (a *Agent) localFileError(c *candidate, err error) bool {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return false
	}
	in := func(dir string) bool { return dir != "" && strings.HasPrefix(pe.Path, dir+string(filepath.Separator)) }
	return in(c.DirPath) || in(a.staging.path(c, ""))
}

// forgetFalseLost drops "lost" entries (and their pending gap markers)
// whose file is there: an older agent recorded any open error as a loss.
// The segment is then archived like any other; a marker written before
// does not hide it (data wins over a marker at restore and in ls).
func (a *Agent) forgetFalseLost() {
	for _, e := range a.state.Entries() {
		if e.Status != statusLost || len(e.Files) == 0 {
			continue
		}
		dir, ok := keyDir(e.Key)
		if !ok {
			continue
		}
		p := filepath.Join(dir, e.Files[0].Name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		a.log.Warn("local state records a segment as lost but its file is there; archiving it", "file", p)
		if err := a.state.Delete(e.Key); err != nil {
			a.log.Error("could not update local state", "err", err)
		}
	}
}

// keyDir is the partition dir of a candidate key (see candidate.key).
func keyDir(key string) (string, bool) {
	parts := strings.Split(key, "|")
	if len(parts) < 5 {
		return "", false
	}
	n := len(parts)
	return filepath.Join(strings.Join(parts[:n-4], "|"), parts[n-4]), true
}

// pruneState keeps local state to the live set of segments: an entry that
// is done (archived, corrupt, or lost with its gap marker written) is
// dropped once its segment is neither in this scan (live), nor on disk,
// nor staged, nor being shipped. Staged links of segments that are done
// (a crash between commit and unstage) are removed first.
func (a *Agent) pruneState(live map[string]bool) {
	staged := map[string]bool{}
	for _, c := range a.staging.candidates() {
		c := c
		if e, ok := a.state.Get(c.key()); ok && e.GapKey == "" && sameFiles(e.Files, c.Files) {
			a.staging.unstage(&c)
			continue
		}
		staged[c.key()] = true
	}
	a.mu.Lock()
	busy := map[string]bool{}
	for k := range a.seen {
		busy[k] = true
	}
	for k := range a.inflight {
		busy[k] = true
	}
	a.mu.Unlock()
	for _, e := range a.state.Entries() {
		if live[e.Key] || staged[e.Key] || busy[e.Key] || e.GapKey != "" || len(e.Files) == 0 {
			continue
		}
		dir, ok := keyDir(e.Key)
		if !ok {
			continue
		}
		p := filepath.Join(dir, e.Files[0].Name)
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			continue // on disk (a filtered topic), or cannot tell
		}
		if _, err := os.Lstat(p + segment.SuffixDeleted); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := a.state.Delete(e.Key); err != nil {
			a.log.Warn("could not prune local state", "err", err)
			return
		}
	}
}

// archivedAlready: local state records c itself (same files) as archived.
func (a *Agent) archivedAlready(c *candidate) bool {
	e, ok := a.state.Get(c.key())
	return ok && e.Status == statusArchived && sameFiles(e.Files, c.Files)
}

func (a *Agent) recordLost(ctx context.Context, c *candidate, id BrokerIdentity, why string) {
	a.metrics.SegmentsLost.Inc()
	a.log.Error("segment lost before it was archived", "topic", c.Dir.Topic, "partition", c.Dir.Partition,
		"base_offset", c.Base, "bytes", c.Files[0].Size, "why", why)
	g := archive.GapMarker{Format: archive.GapMarkerFormat, Version: archive.ManifestVersion, ClusterID: id.ClusterID, BrokerID: id.BrokerID, Topic: c.Dir.Topic,
		Partition: c.Dir.Partition, TopicID: a.topicID(c), BaseOffset: c.Base, NextBase: c.NextBase, Bytes: c.Files[0].Size,
		Reason: why, At: time.Now().UTC()}
	data, _ := json.MarshalIndent(g, "", " ")
	key := a.layout.GapKeyV2(archive.SegmentRef{Cluster: id.ClusterID, Topic: c.Dir.Topic, Partition: c.Dir.Partition,
		TopicID: g.TopicID, BaseOffset: c.Base, Broker: id.BrokerID})
	e := stateEntry{Key: c.key(), Status: statusLost, Files: c.Files, Detail: why, At: g.At, GapKey: key, GapBody: data}
	if err := a.state.Put(e); err != nil {
		a.log.Error("could not record the loss in local state", "err", err)
	}
	a.staging.unstage(c)
	a.mu.Lock()
	delete(a.failing, c.key())
	a.mu.Unlock()
	// The marker itself is written by retryGapsAsync: never block a pass on the bucket.
}

// writeGap writes a lost segment's gap marker to the bucket; until it
// succeeds the state keeps it pending and every pass retries it.
func (a *Agent) writeGap(ctx context.Context, e stateEntry) {
	if err := a.store.PutManifest(ctx, e.GapKey, e.GapBody); err != nil && !errors.Is(err, uploader.ErrConflict) {
		a.log.Warn("gap marker not written yet; will retry", "key", e.GapKey, "err", err)
		return
	}
	e.GapKey, e.GapBody = "", nil
	a.state.Put(e)
}

// retryGapsAsync retries pending gap markers in the background.
func (a *Agent) retryGapsAsync() {
	pending := a.state.PendingGaps()
	if len(pending) == 0 {
		return
	}
	a.mu.Lock()
	if a.inflight["gaps"] {
		a.mu.Unlock()
		return
	}
	a.inflight["gaps"] = true
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for _, e := range pending {
			a.writeGap(a.workCtx, e)
		}
		a.mu.Lock()
		delete(a.inflight, "gaps")
		a.mu.Unlock()
	}()
}

// updateLag publishes the archive lag.
func (a *Agent) updateLag(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n, bytes int64
	var oldest time.Time
	for _, o := range a.seen {
		n++
		for _, f := range o.c.Files {
			bytes += f.Size
		}
		if oldest.IsZero() || o.first.Before(oldest) {
			oldest = o.first
		}
	}
	a.metrics.LagSegments.Set(float64(n))
	a.metrics.LagBytes.Set(float64(bytes))
	if oldest.IsZero() {
		a.metrics.LagSeconds.Set(0)
	} else {
		a.metrics.LagSeconds.Set(now.Sub(oldest).Seconds())
	}
}

// limitRead applies the disk-read bandwidth limit.
func (a *Agent) limitRead(ctx context.Context, r io.Reader) io.Reader {
	if a.limiter == nil {
		return r
	}
	return &limitedReader{ctx: ctx, r: r, l: a.limiter}
}

type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > l.l.Burst() {
		p = p[:l.l.Burst()]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.l.WaitN(l.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// captureRootAsync captures a log dir's root files in the background (one
// capture per dir at a time): a pass never waits for the bucket.
func (a *Agent) captureRootAsync(dir string, id BrokerIdentity) {
	key := "root|" + dir
	a.mu.Lock()
	if a.inflight[key] {
		a.mu.Unlock()
		return
	}
	a.inflight[key] = true
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.captureRoot(a.workCtx, dir, id); err != nil {
			a.log.Warn("log-dir root capture failed; will retry", "file", dir, "err", err)
		}
		a.mu.Lock()
		delete(a.inflight, key)
		a.mu.Unlock()
	}()
}

// RootCaptureInterval bounds how often changed log-dir root files are
// captured (meta.properties changes are captured at once).
const RootCaptureInterval = 10 * time.Minute

// captureRoot uploads meta.properties and the offset checkpoints of a log
// dir when they changed since the last capture.
func (a *Agent) captureRoot(ctx context.Context, dir string, id BrokerIdentity) error {
	m := archive.LogDirManifest{Format: archive.LogDirManifestFormat, Version: archive.ManifestVersion,
		ClusterID: id.ClusterID, BrokerID: id.BrokerID, LogDir: dir, DirectoryID: id.DirectoryID, Agent: "segvault " + a.version}
	h := sha256.New()
	var metaHash string
	// bootstrap.checkpoint (KRaft metadata.version and feature levels, in
	// the metadata log dir) is needed to rebuild the broker.
	for _, name := range append([]string{index.MetaPropertiesFile, "bootstrap.checkpoint"}, index.RootCheckpointFiles...) {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.Size() > 16<<20 {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(data)
		m.Files = append(m.Files, archive.InlineFile{Name: name, Content: data, SHA256: hex.EncodeToString(sum[:]), ModTime: fi.ModTime().UTC()})
		h.Write([]byte(name))
		h.Write(sum[:])
		if name == index.MetaPropertiesFile {
			metaHash = hex.EncodeToString(sum[:])
		}
	}
	hash := hex.EncodeToString(h.Sum(nil)) + "/" + metaHash
	a.mu.Lock()
	last, known := a.roots[dir]
	a.mu.Unlock()
	if !known {
		// A fresh process: compare with the newest capture in the bucket.
		if prev, at, err := a.latestRootCapture(ctx, id, dir); err == nil && prev != "" {
			last = rootCapture{hash: prev, at: at}
			a.mu.Lock()
			a.roots[dir] = last
			a.mu.Unlock()
		}
	}
	if last.hash == hash || (last.hash != "" && time.Since(last.at) < RootCaptureInterval && last.hash[len(last.hash)-len(metaHash):] == metaHash) {
		return nil
	}
	m.CapturedAt = time.Now().UTC()
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	if err := a.store.PutManifest(ctx, a.layout.LogDirKeyV2(id.ClusterID, id.BrokerID, logDirKey(dir), m.CapturedAt), data); err != nil {
		return err
	}
	a.metrics.RootCaptures.Inc()
	a.mu.Lock()
	a.roots[dir] = rootCapture{hash: hash, at: m.CapturedAt}
	a.mu.Unlock()
	return nil
}

// latestRootCapture returns the content hash (as captureRoot computes it)
// and time of the newest capture of dir in the bucket.
func (a *Agent) latestRootCapture(ctx context.Context, id BrokerIdentity, dir string) (string, time.Time, error) {
	prefix := a.layout.BrokerPrefixV2(id.ClusterID, id.BrokerID) + "logdirs/" + logDirKey(dir) + "/" // where captureRoot writes (LogDirKeyV2)
	newest := ""
	if err := a.store.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
		if oi.Key > newest {
			newest = oi.Key
		}
		return nil
	}); err != nil || newest == "" {
		return "", time.Time{}, err
	}
	data, err := a.store.Get(ctx, newest, archive.MaxManifestSize)
	if err != nil {
		return "", time.Time{}, err
	}
	m, err := archive.DecodeLogDirManifest(newest, data)
	if err != nil {
		return "", time.Time{}, err
	}
	h := sha256.New()
	var metaHash string
	for _, f := range m.Files {
		sum := sha256.Sum256(f.Content)
		h.Write([]byte(f.Name))
		h.Write(sum[:])
		if f.Name == index.MetaPropertiesFile {
			metaHash = hex.EncodeToString(sum[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)) + "/" + metaHash, m.CapturedAt, nil
}

// rebuildState fills empty local state from the bucket: every manifest this
// broker committed marks its segment archived if the local files still have
// the recorded sizes and modification times, so nothing is read again.
func (a *Agent) rebuildState(ctx context.Context) error {
	n := 0
	for _, dir := range a.cfg.LogDirs {
		id, err := a.identity(dir)
		if err != nil {
			a.log.Warn("state not rebuilt for a log dir", "file", dir, "err", err)
			continue // one broken log dir does not stop the others
		}
		scans, _, err := scanLogDirIsolated(dir, a.snap().filter, a.cfg.IncludeActive)
		if err != nil {
			a.log.Warn("state not rebuilt for a log dir", "file", dir, "err", err)
			continue
		}
		for _, ps := range scans {
			byBase := map[string]*candidate{}
			for i := range ps.Candidates {
				c := &ps.Candidates[i]
				byBase[fmt.Sprintf("%s/%d/%d", c.Kind, c.Base, c.Epoch)] = c
			}
			if len(byBase) == 0 {
				continue
			}
			// Both layout versions: a v2 manifest matches like a v1 one
			// (its files' names, sizes and mtimes are the local files').
			cat, err := archive.ListPartition(ctx, a.store, a.layout, id.ClusterID, ps.Dir.Topic, ps.Dir.Partition)
			if err != nil {
				return err
			}
			for _, v := range cat.Versions {
				if v.Key.Broker != id.BrokerID {
					continue
				}
				key := v.Manifest.Key
				data, err := a.store.Get(ctx, key, archive.MaxManifestSize)
				if err != nil {
					return err
				}
				m, err := archive.DecodeSegmentManifest(key, data)
				if err != nil || m.BrokerID != id.BrokerID {
					continue
				}
				c := byBase[fmt.Sprintf("%s/%d/%d", m.Kind, m.BaseOffset, m.SnapshotEpoch)]
				if c == nil || !manifestMatches(m, c) {
					continue
				}
				n++
				if err := a.state.Put(stateEntry{Key: c.key(), Status: statusArchived, Files: c.Files, Manifest: key, At: time.Now().UTC()}); err != nil {
					return err
				}
			}
		}
	}
	a.log.Info("state rebuilt from the bucket", "segments", n)
	return nil
}

// manifestMatches reports whether manifest m records exactly c's files, with
// their sizes and modification times.
func manifestMatches(m *archive.SegmentManifest, c *candidate) bool {
	if len(m.Files) != len(c.Files) {
		return false
	}
	for i, f := range m.Files {
		if f.Name != c.Files[i].Name || f.Size != c.Files[i].Size || !f.ModTime.Equal(c.Files[i].MTime) {
			return false
		}
	}
	return true
}
