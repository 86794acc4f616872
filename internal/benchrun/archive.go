package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// agentOnceRe parses `segvault agent --once`'s summary line.
var agentOnceRe = regexp.MustCompile(`(\d+) partitions, (\d+) segments archived \((\d+) bytes, (\d+) stored\), (\d+) already archived, (\d+) corrupt, (\d+) lost, (\d+) failed`)

type onceSummary struct {
	partitions, archived, already, corrupt, failed int
	raw, stored                                    int64
}

func parseOnce(out string) (onceSummary, error) {
	m := agentOnceRe.FindStringSubmatch(out)
	if m == nil {
		return onceSummary{}, fmt.Errorf("no summary line in agent output: %q", out)
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
	return onceSummary{partitions: int(n(1)), archived: int(n(2)), raw: n(3), stored: n(4), already: int(n(5)), corrupt: int(n(6)), failed: int(n(8))}, nil
}

// agentArgs is `segvault agent` against a bucket. Every measured agent runs
// at normal priority: the agent's default (nice 10, idle I/O class) would
// hand the loaded machine's CPUs to everything else and make the
// comparison with a baseline at normal priority meaningless.
func (h *harness) agentArgs(logDir, bucket, state string, extra ...string) []string {
	args := []string{"--log-level", "warn", "agent", "--log-dirs", logDir, "--state-dir", state, "--normal-priority"}
	args = append(args, h.s3Flags(bucket)...)
	return append(args, extra...)
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }

// agentOnceAll runs `segvault agent --once` over logDir into bucket and
// checks that it archived all segs rolled segments. An --once that returns
// success having archived only part of them (no failure, no corrupt
// segment) is run again with the same state and bucket, up to 20 times;
// the result sums the runs (wall, CPU, MinIO CPU; the largest peak RSS),
// and a warning says so.
func (h *harness) agentOnceAll(ctx context.Context, logDir, bucket, state string, segs int) (childResult, onceSummary, int, error) {
	var total childResult
	var sum onceSummary
	runs := 0
	for sum.archived < segs && runs < 20 {
		runs++
		r, err := h.runChild(ctx, h.o.segvault, h.agentArgs(logDir, bucket, state, "--once", "--settle-time", "0")...)
		if err != nil {
			return total, sum, runs, fmt.Errorf("agent --once: %w", err)
		}
		s, err := parseOnce(r.Stdout)
		if err != nil {
			return total, sum, runs, err
		}
		total.Wall += r.Wall
		total.CPU += r.CPU
		total.ServerCPU += r.ServerCPU
		total.MaxRSS = max(total.MaxRSS, r.MaxRSS)
		total.Stdout += r.Stdout
		sum.partitions = s.partitions
		sum.archived += s.archived
		sum.raw += s.raw
		sum.stored += s.stored
		sum.failed += s.failed
		sum.corrupt += s.corrupt
		if s.failed+s.corrupt > 0 || s.archived == 0 {
			break
		}
	}
	if sum.archived != segs || sum.failed+sum.corrupt > 0 {
		return total, sum, runs, fmt.Errorf("agent --once archived %d of %d segments in %d runs (%d failed, %d corrupt)", sum.archived, segs, runs, sum.failed, sum.corrupt)
	}
	if runs > 1 {
		h.rep.Warnings = append(h.rep.Warnings, fmt.Sprintf("`segvault agent --once` over %s exited 0 having archived only part of its %d rolled segments (no failure reported); benchrun ran it %d times in a row to archive them all. Per run: %s",
			filepath.Base(logDir), segs, runs, strings.ReplaceAll(strings.TrimSpace(total.Stdout), "\n", " | ")))
	}
	return total, sum, runs, nil
}

func (h *harness) benchArchive(ctx context.Context) error {
	me, err := self()
	if err != nil {
		return err
	}
	for _, ds := range []string{dsBigJSON, dsBigIncomp, dsSmall} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logDir := h.logDirs[ds]
		files, segs, err := rolledFiles(logDir)
		if err != nil {
			return err
		}
		raw := totalSize(files)
		var lines []string
		for _, f := range files {
			lines = append(lines, f.path+"\t"+f.key)
		}
		list := filepath.Join(h.work, "put-"+ds+".txt")
		if err := writeList(list, lines); err != nil {
			return err
		}

		// Baseline: plain PutObject of the same files, same concurrency.
		if err := warm(files); err != nil {
			return err
		}
		pb, err := h.newBucket(ctx, "plain")
		if err != nil {
			return err
		}
		plain, err := h.runChild(ctx, me, "-child", "put", "-endpoint", h.srv.Endpoint(), "-bucket", pb, "-list", list, "-concurrency", "2")
		if err != nil {
			return fmt.Errorf("baseline put %s: %w", ds, err)
		}
		h.removeBucket(ctx, pb)
		if ds == dsSmall {
			// For the roll-latency baseline: plain PUT time per MiB of 1 MiB segments.
			h.putPerMiB, h.putPerMiBOK = plain.Wall.Seconds()/(float64(raw)/mib), true
		}

		// segvault agent --once into a fresh bucket with fresh state.
		if err := warm(files); err != nil {
			return err
		}
		ab, err := h.newBucket(ctx, "archive")
		if err != nil {
			return err
		}
		state := filepath.Join(h.work, "state-archive-"+ds)
		agent, sum, runs, err := h.agentOnceAll(ctx, logDir, ab, state, segs)
		if err != nil {
			return fmt.Errorf("%s: %w", ds, err)
		}
		h.archived[ds] = ab
		os.RemoveAll(state)

		note := ""
		if runs > 1 {
			note = fmt.Sprintf("**`segvault agent --once` exited 0 after archiving only part of the %d segments; it was run %d times in a row (same state dir, same bucket) until every segment was archived, and the figures cover all %d runs.** ", segs, runs, runs)
		}
		note += fmt.Sprintf("%d segments, %s raw; the agent stored %s (%.0f%% of raw). Both sides: page-cached files, 2 segments (agent --concurrency default) or 2 objects at a time (baseline), 16 MiB parts, 2 parts in flight; CPU time is the child process's rusage (MinIO's own CPU: agent run %.1f s, baseline %.1f s).",
			segs, humanBytes(raw), humanBytes(sum.stored), 100*float64(sum.stored)/float64(raw), agent.ServerCPU.Seconds(), plain.ServerCPU.Seconds())
		h.rep.add(row{ID: "archive.throughput." + ds, Group: "archive", Name: "Archive throughput (`segvault agent --once` → MinIO)", Dataset: ds,
			Value: float64(raw) / mib / agent.Wall.Seconds(), Unit: "MiB/s", Baseline: "minio-go PutObject of the same files",
			BaselineValue: float64(raw) / mib / plain.Wall.Seconds(), Better: "higher", Notes: note,
			Extra: map[string]float64{"agent_wall_s": agent.Wall.Seconds(), "plain_wall_s": plain.Wall.Seconds(), "raw_bytes": float64(raw),
				"stored_bytes": float64(sum.stored), "agent_minio_cpu_s": agent.ServerCPU.Seconds(), "plain_minio_cpu_s": plain.ServerCPU.Seconds()}})
		h.rep.add(row{ID: "archive.cpu." + ds, Group: "archive", Name: "Archive CPU time per GiB (user+sys)", Dataset: ds,
			Value: agent.CPU.Seconds() / gib(raw), Unit: "s/GiB", Baseline: "minio-go PutObject of the same files",
			BaselineValue: plain.CPU.Seconds() / gib(raw), Better: "lower"})
		if ds != dsSmall {
			h.rep.add(row{ID: "archive.rss." + ds, Group: "archive", Name: "Agent peak RSS archiving " + humanBytes(h.sz.BigSegmentBytes) + " segments (VmHWM)", Dataset: ds,
				Value: float64(agent.MaxRSS) / mib, Unit: "MiB", Baseline: "minio-go PutObject process", BaselineValue: float64(plain.MaxRSS) / mib, Better: "lower"})
		}
	}
	return nil
}

// restoreReport is the part of `segvault restore --json` we read.
type restoreReport struct {
	Partitions int
	Segments   int
	Files      int
	Bytes      int64
	Duration   time.Duration
}

func (h *harness) benchRestore(ctx context.Context) error {
	me, err := self()
	if err != nil {
		return err
	}
	for _, ds := range []string{dsBigJSON, dsBigIncomp, dsSmall} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		bucket := h.archived[ds]
		if bucket == "" {
			return fmt.Errorf("%s was not archived (the archive step must run first)", ds)
		}
		var lines []string
		var stored int64
		for oi := range h.srv.Client().ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err != nil {
				return oi.Err
			}
			lines = append(lines, oi.Key+"\t"+strconv.FormatInt(oi.Size, 10))
			stored += oi.Size
		}
		list := filepath.Join(h.work, "get-"+ds+".txt")
		if err := writeList(list, lines); err != nil {
			return err
		}
		dest := filepath.Join(h.work, "get-"+ds)
		plain, err := h.runChild(ctx, me, "-child", "get", "-endpoint", h.srv.Endpoint(), "-bucket", bucket, "-list", list, "-dest", dest, "-concurrency", "4")
		if err != nil {
			return fmt.Errorf("baseline get %s: %w", ds, err)
		}
		os.RemoveAll(dest)

		target := filepath.Join(h.work, "restore-"+ds)
		args := append([]string{"--log-level", "warn", "restore", "--target", target, "--concurrency", "4", "--json"}, h.s3Flags(bucket)...)
		res, err := h.runChild(ctx, h.o.segvault, args...)
		if err != nil {
			return fmt.Errorf("restore %s: %w", ds, err)
		}
		var rr restoreReport
		if err := json.Unmarshal([]byte(res.Stdout), &rr); err != nil {
			return fmt.Errorf("restore %s: report: %w (%q)", ds, err, res.Stdout)
		}
		// Sanity: every archived .log came back with its size.
		orig, _, err := rolledFiles(h.logDirs[ds])
		if err != nil {
			return err
		}
		var want, got int64
		for _, f := range orig {
			if strings.HasSuffix(f.key, ".log") {
				want += f.size
				if fi, err := os.Stat(filepath.Join(target, filepath.FromSlash(f.key))); err == nil {
					got += fi.Size()
				}
			}
		}
		os.RemoveAll(target)
		if got != want {
			return fmt.Errorf("restore %s: %d bytes of .log files restored, want %d", ds, got, want)
		}
		note := fmt.Sprintf("%d partitions, %d segments, %d files, %s written (raw), %s fetched (stored objects). segvault restore: fetch, verify size + SHA-256 + CRC-32C of stored and raw bytes, decompress, write, fsync, rename, 4 partitions at a time. Baseline: GetObject of every object in the bucket (the same %s) to a file, 4 at a time, no verification, no fsync; its figure is the same raw bytes ÷ its time (its stored-byte rate: %.0f MiB/s).",
			rr.Partitions, rr.Segments, rr.Files, humanBytes(rr.Bytes), humanBytes(stored), humanBytes(stored), float64(stored)/mib/plain.Wall.Seconds())
		h.rep.add(row{ID: "restore.throughput." + ds, Group: "restore", Name: "Restore throughput (`segvault restore` from MinIO)", Dataset: ds,
			Value: float64(rr.Bytes) / mib / res.Wall.Seconds(), Unit: "MiB/s", Baseline: "minio-go GetObject of the same objects to files",
			BaselineValue: float64(rr.Bytes) / mib / plain.Wall.Seconds(), Better: "higher", Notes: note,
			Extra: map[string]float64{"restore_wall_s": res.Wall.Seconds(), "plain_wall_s": plain.Wall.Seconds(), "raw_bytes": float64(rr.Bytes), "stored_bytes": float64(stored),
				"restore_peak_rss_mib": float64(res.MaxRSS) / mib, "plain_peak_rss_mib": float64(plain.MaxRSS) / mib}})
		h.rep.add(row{ID: "restore.cpu." + ds, Group: "restore", Name: "Restore CPU time per GiB written (user+sys)", Dataset: ds,
			Value: res.CPU.Seconds() / gib(rr.Bytes), Unit: "s/GiB", Baseline: "minio-go GetObject of the same objects to files",
			BaselineValue: plain.CPU.Seconds() / gib(rr.Bytes), Better: "lower"})
	}
	return nil
}
