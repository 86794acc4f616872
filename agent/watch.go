package agent

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher turns filesystem events in the log dirs and partition dirs into
// rescan hints. Events can be lost or overflow, so the periodic full rescan
// stays the source of truth; when inotify is unavailable or its limits are
// reached the agent falls back to rescans only, with a warning.
type watcher struct {
	a       *Agent
	w       *fsnotify.Watcher
	watched map[string]bool
	kick    chan struct{}
	polling bool
}

func (a *Agent) newWatcher() *watcher {
	wt := &watcher{a: a, watched: map[string]bool{}, kick: make(chan struct{}, 1)}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		wt.fallback(err)
		return wt
	}
	wt.w = w
	return wt
}

func (wt *watcher) fallback(err error) {
	if !wt.polling {
		wt.a.log.Warn("inotify unavailable or its limits reached; relying on periodic rescans only (raise fs.inotify.max_user_watches)", "err", err)
	}
	wt.polling = true
	wt.a.metrics.PollingFallback.Set(1)
	if wt.w != nil {
		wt.w.Close()
		wt.w = nil
	}
	wt.watched = map[string]bool{}
	wt.a.metrics.Watches.Set(0)
}

// sync adds watches for the log dirs and current partition dirs and
// removes watches for dirs that are gone.
func (wt *watcher) sync() {
	if wt.w == nil {
		return
	}
	want := map[string]bool{}
	for _, d := range wt.a.cfg.LogDirs {
		want[filepath.Clean(d)] = true
	}
	wt.a.mu.Lock()
	for p := range wt.a.partPaths {
		want[p] = true
	}
	wt.a.mu.Unlock()
	for p := range wt.watched {
		if !want[p] {
			wt.w.Remove(p)
			delete(wt.watched, p)
		}
	}
	for p := range want {
		if wt.watched[p] {
			continue
		}
		if err := wt.w.Add(p); err != nil {
			if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) {
				wt.fallback(err)
				return
			}
			continue // vanished meanwhile
		}
		wt.watched[p] = true
	}
	wt.a.metrics.Watches.Set(float64(len(wt.watched)))
}

// loop forwards events as kicks until ctx ends.
func (wt *watcher) loop(ctx context.Context) {
	if wt.w == nil {
		return
	}
	events, errs := wt.w.Events, wt.w.Errors
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			// New segments, renames (.deleted, .swap) and new partition dirs matter.
			if ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				select {
				case wt.kick <- struct{}{}:
				default:
				}
			}
		case err, ok := <-errs:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				select {
				case wt.kick <- struct{}{}:
				default:
				}
				continue
			}
			wt.a.log.Warn("watch error", "err", err)
		}
	}
}

func (wt *watcher) close() {
	if wt.w != nil {
		wt.w.Close()
	}
}

// Run is the daemon: a pass at start, then on every filesystem hint
// (debounced), every finished shipment and every ScanInterval, until ctx is
// cancelled. Shipments in flight then get DrainTimeout to finish. reload,
// when it receives a config, applies it from the next pass on (SIGHUP).
func (a *Agent) Run(ctx context.Context, reload <-chan Config) error {
	wait := a.startWork(ctx)
	defer a.drain(ctx, wait)
	defer a.startTail(ctx)() // tail capture; on stop, a last capture
	wt := a.newWatcher()
	defer wt.close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go wt.loop(wctx)
	const debounce = 500 * time.Millisecond
	tick := time.NewTicker(a.snap().ScanInterval)
	defer tick.Stop()
	for {
		rep, err := a.Pass(ctx)
		if err != nil {
			a.log.Error("scan failed", "err", err)
			a.mu.Lock()
			a.ready, a.lastErr = false, err
			a.mu.Unlock()
			a.metrics.Ready.Set(0)
		}
		if d := a.takeDone(); d.Archived+d.Corrupt+d.Lost+d.Failed > 0 {
			a.log.Info("archived", "segments", d.Archived, "already", d.Already, "corrupt", d.Corrupt,
				"lost", d.Lost, "failed", d.Failed, "bytes", d.RawBytes)
		}
		wt.sync()
		cfg := a.snap()
		next := cfg.ScanInterval
		if rep != nil && rep.Waiting > 0 {
			next = min(next, max(cfg.SettleTime, 200*time.Millisecond)) // come back when they may have settled
		}
		timer := time.NewTimer(next)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-tick.C:
		case <-timer.C:
		case <-a.kick:
		case <-wt.kick:
			time.Sleep(debounce)
		case cfg := <-reload:
			if err := a.applyConfig(cfg); err != nil {
				a.ReloadFailed(err)
			} else {
				a.log.Info("config reloaded")
				tick.Reset(a.snap().ScanInterval)
			}
		}
		timer.Stop()
	}
}

// drainGrace is how long after DrainTimeout (when in-flight uploads are
// cancelled) the agent waits for them to unwind before it stops waiting.
const drainGrace = 500 * time.Millisecond

// drain runs wait (which waits for shipments) and reports whether it
// returned. Once ctx is cancelled the wait is bounded: uploads are
// cancelled at DrainTimeout (startWork) and one that ignores its
// cancellation (a hung mount, a wedged read) is abandoned drainGrace later,
// so that a stop always ends the process in time.
func (a *Agent) drain(ctx context.Context, wait func()) bool {
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	select {
	case <-done:
		return true
	case <-time.After(a.cfg.DrainTimeout + drainGrace):
		a.log.Error("stopping with shipments still in flight after the drain timeout; they are retried on the next start",
			"drain_timeout", a.cfg.DrainTimeout)
		return false
	}
}

// applyConfig takes the reloadable options of a new config: it builds a
// new snapshot and swaps it in; shipments in flight keep the one they took.
// An invalid config changes nothing.
func (a *Agent) applyConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	a.mu.Lock() // one reload at a time
	defer a.mu.Unlock()
	n := a.snap().Config
	n.IncludeTopics, n.ExcludeTopics = c.IncludeTopics, c.ExcludeTopics
	n.ScanInterval, n.SettleTime = c.ScanInterval, c.SettleTime
	n.DeepValidate, n.DropCache = c.DeepValidate, c.DropCache
	a.live.Store(newSnapshot(n))
	return nil
}

// ReloadFailed records a rejected reload (SIGHUP with an invalid config
// file): logged and counted in segvault_agent_failures_total{stage=
// "config_reload"}; the configuration in force stays.
func (a *Agent) ReloadFailed(err error) {
	a.metrics.Failures.WithLabelValues("config_reload").Inc()
	a.log.Error("config reload rejected; the running configuration stays", "err", err)
}

// RunOnce archives every segment that has rolled, waiting for ones that
// have not settled yet, and returns what it did. A segment whose upload
// fails is retried (with backoff) up to maxOnceAttempts times; the report's
// Failed and Waiting say what is left undone.
func (a *Agent) RunOnce(ctx context.Context) (*PassReport, error) {
	wait := a.startWork(ctx)
	abandoned := false
	defer func() {
		if !abandoned {
			a.drain(ctx, wait)
		}
	}()
	a.blockDispatch = true
	defer func() { a.blockDispatch = false }()
	total := &PassReport{}
	first := true
	for {
		rep, err := a.Pass(ctx)
		if err != nil {
			return total, err
		}
		if !a.drain(ctx, a.wg.Wait) {
			abandoned = true
			total.Waiting = rep.Waiting
			return total, ctx.Err()
		}
		d := a.takeDone()
		total.Partitions = rep.Partitions
		total.Archived += d.Archived
		total.Already += d.Already
		if first { // later passes find this run's uploads in the state too
			total.Already += rep.InState
			first = false
		}
		total.Corrupt += d.Corrupt
		total.Lost += d.Lost
		total.Truncated += d.Truncated
		total.RawBytes += d.RawBytes
		total.Stored += d.Stored
		total.Errors = append(total.Errors, d.Errors...)
		if ctx.Err() != nil { // stopped: what is left is unfinished, not done
			total.Waiting = rep.Waiting
			return total, ctx.Err()
		}
		gaveUp := a.givenUp()
		if rep.Started == 0 && rep.Waiting <= gaveUp {
			// Log dirs and partition dirs that could not be scanned count as failed too.
			total.Failed, total.Waiting = gaveUp+rep.Failed, rep.Waiting-gaveUp
			total.Errors = append(total.Errors, rep.Errors...)
			return total, nil
		}
		if rep.Started == 0 { // only unsettled or backing-off segments left
			select {
			case <-ctx.Done():
				total.Waiting = rep.Waiting
				return total, ctx.Err()
			case <-time.After(min(max(a.snap().SettleTime, 100*time.Millisecond), time.Second)):
			}
		}
	}
}
