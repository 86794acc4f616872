package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scrape reads a Prometheus text exposition into name -> value (label sets
// of one name are summed).
func scrape(addr string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		name := l[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

func ready(addr string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// daemon is a running `segvault agent` (no --once) with its metrics address.
type daemon struct {
	cmd     *exec.Cmd
	addr    string
	start   time.Time
	errb    *tailWriter
	done    chan struct{} // closed when the process has exited
	waitErr error
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (h *harness) startDaemon(ctx context.Context, logDir, bucket, state string, extra ...string) (*daemon, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := h.agentArgs(logDir, bucket, state, append([]string{"--listen", addr}, extra...)...)
	cmd := exec.Command(h.o.segvault, args...)
	d := &daemon{cmd: cmd, addr: addr, errb: &tailWriter{max: 8 << 10}}
	cmd.Stderr = d.errb
	d.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d.done = make(chan struct{})
	go func() { d.waitErr = cmd.Wait(); close(d.done) }()
	return d, nil
}

// waitReady polls /readyz (true once the first pass is complete).
func (d *daemon) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if ready(d.addr) {
			return time.Since(d.start), nil
		}
		if d.exited() {
			return 0, fmt.Errorf("agent exited (%v); stderr tail:\n%s", d.waitErr, d.errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("agent not ready after %s; stderr tail:\n%s", timeout, d.errb.String())
}

// peakRSS is VmHWM from /proc (the process's peak resident set so far).
func (d *daemon) peakRSS() int64 { return vmHWM(d.cmd.Process.Pid) }

// stop sends SIGTERM and returns the process's CPU time.
func (d *daemon) stop() (cpu time.Duration, err error) {
	if !d.exited() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-d.done:
		err = d.waitErr
	case <-time.After(90 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		err = errors.Join(errors.New("agent did not stop within 90s of SIGTERM"), d.waitErr)
	}
	if ru, ok := d.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return cpu, err
}

type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// scanRun is one start of the daemon over the scan tree.
type scanRun struct {
	ready   time.Duration // process start -> first pass complete
	watched time.Duration // process start -> inotify watches in place
	scanSec float64       // the first pass itself (segvault_agent_scan_seconds)
	watches float64
	polling float64
	parts   float64
	waiting float64 // segvault_agent_lag_segments: rolled candidates held
	peakRSS int64
	cpu     time.Duration
}

func (h *harness) scanOnce(ctx context.Context, logDir, bucket, state string, wantWatches int, extra ...string) (scanRun, error) {
	var r scanRun
	d, err := h.startDaemon(ctx, logDir, bucket, state, append([]string{"--settle-time", "1h", "--scan-interval", "1h", "--claim-ttl", "3h"}, extra...)...)
	if err != nil {
		return r, err
	}
	defer func() {
		if !d.exited() {
			d.stop()
		}
	}()
	if r.ready, err = d.waitReady(ctx, 10*time.Minute); err != nil {
		return r, err
	}
	// Watches are added right after the first pass.
	deadline := time.Now().Add(3 * time.Minute)
	var m map[string]float64
	for {
		m, err = scrape(d.addr)
		if err != nil {
			return r, err
		}
		if m["segvault_agent_inotify_watches"] >= float64(wantWatches) || m["segvault_agent_polling_fallback"] > 0 || time.Now().After(deadline) {
			r.watched = time.Since(d.start)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.scanSec = m["segvault_agent_scan_seconds_sum"]
	r.watches = m["segvault_agent_inotify_watches"]
	r.polling = m["segvault_agent_polling_fallback"]
	r.parts = m["segvault_agent_partitions"]
	r.waiting = m["segvault_agent_lag_segments"]
	hwm := d.peakRSS()
	cpu, err := d.stop()
	if err != nil {
		return r, fmt.Errorf("%w; stderr tail:\n%s", err, d.errb.String())
	}
	r.cpu, r.peakRSS = cpu, hwm
	return r, nil
}

// plainWalk is the least any scan of the tree does: list the log dir, list
// every partition dir and stat every file in it.
func plainWalk(logDir string) (time.Duration, int, error) {
	t0 := time.Now()
	ents, err := os.ReadDir(logDir)
	if err != nil {
		return 0, 0, err
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(logDir, e.Name())
		fs, err := os.ReadDir(dir)
		if err != nil {
			return 0, 0, err
		}
		for _, f := range fs {
			if _, err := os.Stat(filepath.Join(dir, f.Name())); err != nil {
				return 0, 0, err
			}
			n++
		}
	}
	return time.Since(t0), n, nil
}

func (h *harness) benchStartupScan(ctx context.Context) error {
	n, per := h.sz.ScanPartitions, 20
	logDir := filepath.Join(h.work, "logs-scan")
	if err := h.writeRoot(logDir); err != nil {
		return err
	}
	t0 := time.Now()
	if err := linkPartitions(logDir, h.tinyPart, n, per); err != nil {
		return err
	}
	files, segs, err := rolledFiles(logDir)
	if err != nil {
		return err
	}
	logf("   linked %d partitions (%d rolled segments, %d files to archive) in %s", n, segs, len(files), time.Since(t0).Round(100*time.Millisecond))
	tinyFiles, _ := os.ReadDir(h.tinyPart)
	h.rep.dataset(dataset{Name: "scan-tree", Segments: segs, Files: n * len(tinyFiles), Bytes: totalSize(files),
		Description: fmt.Sprintf("%d partitions (%d topics × %d) × %d rolled segments + 1 active; every partition dir holds hard links to the same %d files of one brokersim partition of tiny one-batch segments (real .log/.index/.timeindex/.snapshot, the active segment's indexes preallocated sparse 10 MiB)",
			n, (n+per-1)/per, per, h.sz.ScanSegments, len(tinyFiles))})

	bucket, err := h.newBucket(ctx, "scan")
	if err != nil {
		return err
	}
	// Staging off (--staging-budget 0) for the scan figures: with staging on,
	// the agent hard-links every rolled, not yet archived segment the moment
	// it sees it, so a start in front of this tree would measure staging a
	// 50,000-segment backlog rather than the scan. That is measured
	// separately, last.
	noStaging := []string{"--staging-budget", "0"}
	state := filepath.Join(h.work, "state-scan")
	first, err := h.scanOnce(ctx, logDir, bucket, state, n+1, noStaging...)
	if err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	restart, err := h.scanOnce(ctx, logDir, bucket, state, n+1, noStaging...)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	walk, walked, err := plainWalk(logDir)
	if err != nil {
		return err
	}
	// The agent's own footprint on a one-partition log dir: the RSS baseline.
	oneDir := filepath.Join(h.work, "logs-scan-one")
	if err := h.writeRoot(oneDir); err != nil {
		return err
	}
	if err := linkPartitions(oneDir, h.tinyPart, 1, per); err != nil {
		return err
	}
	one, err := h.scanOnce(ctx, oneDir, bucket, filepath.Join(h.work, "state-scan-one"), 2, noStaging...)
	if err != nil {
		return fmt.Errorf("one-partition agent: %w", err)
	}
	// A restart with the default staging budget: the whole backlog is staged.
	staged, err := h.scanOnce(ctx, logDir, bucket, state, n+1)
	if err != nil {
		return fmt.Errorf("restart with staging: %w", err)
	}
	ds := fmt.Sprintf("scan-tree: %s partitions × %d segments", thousands(strconv.Itoa(n)), h.sz.ScanSegments)
	if h.o.quick {
		ds += " (quick; full: 10,000)"
	}
	watchNote := ""
	if restart.polling > 0 {
		watchNote = " inotify limits were hit: the agent fell back to polling (segvault_agent_polling_fallback = 1)."
	}
	h.rep.add(row{ID: "scan.restart", Group: "scan", Name: "Agent restart: first scan pass (segvault_agent_scan_seconds)", Dataset: ds,
		Value: restart.scanSec, Unit: "s", Baseline: "readdir + stat of every file", BaselineValue: walk.Seconds(), Better: "lower",
		Notes: fmt.Sprintf("`segvault agent` daemon with --settle-time 1h, so the %.0f rolled segments it finds are held as waiting and nothing is uploaded, and --staging-budget 0 (see the staging row). Restart (state dir present): process start to /readyz %.2f s, to inotify watches in place %.2f s, %.2f CPU-s in all. First start with empty state (it rebuilds state from the bucket, one LIST per partition): scan pass %.2f s, process start to /readyz %.2f s, to watches %.2f s, peak RSS %.0f MiB. The baseline walk lists %d partition dirs and stats %d files.%s",
			restart.waiting, restart.ready.Seconds(), restart.watched.Seconds(), restart.cpu.Seconds(), first.scanSec, first.ready.Seconds(), first.watched.Seconds(), float64(first.peakRSS)/mib, n, walked, watchNote),
		Extra: map[string]float64{"restart_ready_s": restart.ready.Seconds(), "restart_watches_s": restart.watched.Seconds(), "first_scan_s": first.scanSec,
			"first_ready_s": first.ready.Seconds(), "first_watches_s": first.watched.Seconds(), "first_peak_rss_mib": float64(first.peakRSS) / mib,
			"partitions_seen": restart.parts, "segments_waiting": restart.waiting, "restart_cpu_s": restart.cpu.Seconds(), "first_cpu_s": first.cpu.Seconds()}})
	h.rep.add(row{ID: "scan.startup", Group: "scan", Name: "Agent restart: process start to first pass complete (/readyz)", Dataset: ds,
		Value: restart.ready.Seconds(), Unit: "s", Baseline: "readdir + stat of every file", BaselineValue: walk.Seconds(), Better: "lower"})
	h.rep.add(row{ID: "scan.staged", Group: "scan", Name: "Agent restart with default staging: first pass, staging the backlog", Dataset: ds,
		Value: staged.scanSec, Unit: "s", Baseline: "readdir + stat of every file", BaselineValue: walk.Seconds(), Better: "lower",
		Notes: fmt.Sprintf("The same restart with the default --staging-budget: the first pass hard-links all %.0f waiting segments into the state dir (retention protection) before it completes; %.2f CPU-s, peak RSS %.0f MiB.",
			staged.waiting, staged.cpu.Seconds(), float64(staged.peakRSS)/mib),
		Extra: map[string]float64{"ready_s": staged.ready.Seconds(), "cpu_s": staged.cpu.Seconds(), "peak_rss_mib": float64(staged.peakRSS) / mib}})
	h.rep.add(row{ID: "scan.rss", Group: "scan", Name: "Agent peak RSS after the startup scan (VmHWM)", Dataset: ds,
		Value: float64(restart.peakRSS) / mib, Unit: "MiB", Baseline: "the same agent on 1 partition", BaselineValue: float64(one.peakRSS) / mib, Better: "lower",
		Notes: fmt.Sprintf("%.1f KiB per partition above the one-partition agent (%.0f waiting segments held in memory).", float64(restart.peakRSS-one.peakRSS)/1024/float64(n-1), restart.waiting)})
	h.rep.add(row{ID: "scan.watches", Group: "scan", Name: "inotify watches held (segvault_agent_inotify_watches)", Dataset: ds,
		Value: restart.watches, Unit: "watches", Baseline: "one per partition dir + log dir", BaselineValue: float64(n + 1), Better: "lower"})
	h.removeBucket(ctx, bucket)
	os.RemoveAll(logDir)
	os.RemoveAll(oneDir)
	return nil
}
