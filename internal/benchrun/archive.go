package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/segvault/segvault/archive"
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
func (h *harness) agentOnceAll(ctx context.Context, logDir, bucket, state string, segs int, extra ...string) (childResult, onceSummary, int, error) {
	var total childResult
	var sum onceSummary
	runs := 0
	for sum.archived < segs && runs < 20 {
		runs++
		r, err := h.runChild(ctx, h.o.segvault, h.agentArgs(logDir, bucket, state, append([]string{"--once", "--settle-time", "0"}, extra...)...)...)
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
		total.SysBusy = max(total.SysBusy, r.SysBusy)
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
	if h.rcloneBucket == nil {
		h.rcloneBucket = map[string]string{}
	}
	// Read before this run writes anything: the small-segment figure of the
	// newest committed result of this mode.
	prevSmall := findPrevious(h.o.out, h.sz.Mode, "archive.throughput."+dsSmall)
	for _, ds := range []string{dsBigJSON, dsBigIncomp, dsBigZstd, dsSmall} {
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

		// The one-pass floor over the same files, one core, no upload.
		floor, fres, err := h.onePassChild(ctx, list)
		if err != nil {
			return fmt.Errorf("%s: %w", ds, err)
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
		if ds == dsBigZstd {
			h.removeBucket(ctx, ab) // archive-only dataset: restore covers large-lz4+zstd
		} else {
			h.archived[ds] = ab
		}
		os.RemoveAll(state)

		note := ""
		if runs > 1 {
			note = fmt.Sprintf("**`segvault agent --once` exited 0 after archiving only part of the %d segments; it was run %d times in a row (same state dir, same bucket) until every segment was archived, and the figures cover all %d runs.** ", segs, runs, runs)
		}
		note += fmt.Sprintf("%d segments, %s raw; the agent stored %s (%.0f%% of raw). Both sides: page-cached files, 2 segments (agent --concurrency default) or 2 objects at a time (baseline), 16 MiB parts, 2 parts in flight; CPU time is the child process's rusage (MinIO's own CPU: agent run %.1f s, baseline %.1f s).",
			segs, humanBytes(raw), humanBytes(sum.stored), 100*float64(sum.stored)/float64(raw), agent.ServerCPU.Seconds(), plain.ServerCPU.Seconds())
		var tput, cpu *target
		if ds == dsBigZstd {
			tput, cpu = atLeast(0.9), atMost(1.5)
		}
		h.rep.add(row{ID: "archive.throughput." + ds, Group: "archive", Name: "Archive throughput (`segvault agent --once` → MinIO)", Dataset: ds,
			Value: float64(raw) / mib / agent.Wall.Seconds(), Unit: "MiB/s", Baseline: "minio-go PutObject of the same files",
			BaselineValue: float64(raw) / mib / plain.Wall.Seconds(), Better: "higher", Notes: note, Target: tput,
			Stage: h.stage("the agent", agent, floor.CPU, sum.stored, 0),
			Extra: map[string]float64{"agent_wall_s": agent.Wall.Seconds(), "plain_wall_s": plain.Wall.Seconds(), "raw_bytes": float64(raw),
				"stored_bytes": float64(sum.stored), "agent_minio_cpu_s": agent.ServerCPU.Seconds(), "plain_minio_cpu_s": plain.ServerCPU.Seconds(),
				"agent_sys_busy": agent.SysBusy, "plain_sys_busy": plain.SysBusy}})
		h.rep.add(row{ID: "archive.cpu." + ds, Group: "archive", Name: "Archive CPU time per GiB (user+sys)", Dataset: ds,
			Value: agent.CPU.Seconds() / gib(raw), Unit: "s/GiB", Baseline: "minio-go PutObject of the same files",
			BaselineValue: plain.CPU.Seconds() / gib(raw), Better: "lower", Target: cpu})
		var floorTarget *target
		if ds == dsBigJSON {
			floorTarget = atMost(1.15)
		}
		h.rep.add(row{ID: "archive.cpu_vs_floor." + ds, Group: "archive", Name: "Archive CPU time per GiB vs the one-pass floor", Dataset: ds,
			Value: agent.CPU.Seconds() / gib(raw), Unit: "s/GiB", Baseline: "one-pass floor: read + CRC-32C + SHA-256 + zstd fastest (4 MiB frames, auto rule), one core",
			BaselineValue: floor.CPU.Seconds() / gib(raw), Better: "lower", Target: floorTarget,
			Notes: fmt.Sprintf("The floor (a benchrun child, one goroutine) read %s, compressed %s of it with zstd SpeedFastest (one frame per %s chunk; a file whose chunk 0 stores > 90%% of raw keeps the rest as is, as the v2 \"auto\" rule) into %s stored, in %.2f s wall = %.0f MiB/s on one core, %.2f s CPU. The read + CRC-32C floor of the verify rows is the same read without SHA-256 and zstd.",
				humanBytes(fres.Raw), humanBytes(fres.Zstd), humanBytes(archive.DefaultChunkSize), humanBytes(fres.Stored), floor.Wall.Seconds(), float64(fres.Raw)/mib/floor.Wall.Seconds(), floor.CPU.Seconds()),
			Extra: map[string]float64{"floor_wall_s": floor.Wall.Seconds(), "floor_cpu_s": floor.CPU.Seconds(), "floor_stored_bytes": float64(fres.Stored), "agent_cpu_s": agent.CPU.Seconds()}})
		if ds != dsSmall {
			h.rep.add(row{ID: "archive.rss." + ds, Group: "archive", Name: "Agent peak RSS archiving " + humanBytes(h.sz.BigSegmentBytes) + " segments (VmHWM)", Dataset: ds,
				Value: float64(agent.MaxRSS) / mib, Unit: "MiB", Baseline: "minio-go PutObject process", BaselineValue: float64(plain.MaxRSS) / mib, Better: "lower",
				Target: valueAtMost(64)})
		}
		if ds == dsSmall {
			h.addSmallVsPrevious(prevSmall, raw/mib, agent, plain)
		}
		if ds == dsBigJSON {
			if !h.rcloneAvailable() {
				h.rcloneMissing()
				continue
			}
			if err := h.archiveVsRclone(ctx, ds, logDir, files, segs, raw, agent, sum, floor); err != nil {
				return err
			}
		}
	}
	return nil
}

// addSmallVsPrevious compares the many-small-segments figure with the
// newest committed result of the same mode. Absolute MiB/s on a shared
// machine move with the load, so the figure compared is this run's ratio
// to its own PutObject baseline against the previous run's ratio.
func (h *harness) addSmallVsPrevious(prev previousFigure, _ int64, agent, plain childResult) {
	var this row
	for _, x := range h.rep.Rows {
		if x.ID == "archive.throughput."+dsSmall {
			this = *x
		}
	}
	if !prev.Found || prev.Row.Ratio == 0 || this.Ratio == 0 {
		h.rep.Warnings = append(h.rep.Warnings, "no earlier committed "+h.sz.Mode+"-mode result in "+h.o.out+" has the small-segment archive figure, so \"many small segments no slower than today\" is not compared")
		return
	}
	h.rep.add(row{ID: "archive.small_vs_previous." + dsSmall, Group: "archive", Name: "Archive of many small segments, as a ratio to PutObject, vs the previous committed run", Dataset: dsSmall,
		Value: this.Ratio, Unit: "× PutObject", Baseline: "the same ratio in " + prev.File, BaselineValue: prev.Row.Ratio, Better: "higher", Target: atLeast(1.0),
		Notes: fmt.Sprintf("This run: %.1f MiB/s (PutObject %.1f MiB/s); %s (%s): %.1f MiB/s (PutObject %.1f MiB/s), load average then in that file. The ratio to a baseline measured moments apart is compared because the absolute figures move with the shared machine's load.",
			this.Value, this.BaselineValue, prev.File, prev.Date, prev.Row.Value, prev.Row.BaselineValue)})
}

// archiveVsRclone adds the rclone rows of a dataset: archive throughput
// vs `rclone copy` of the same files, then both held to 100 MiB/s of
// upload. rclone's unlimited copy is kept for the restore baseline.
func (h *harness) archiveVsRclone(ctx context.Context, ds, logDir string, files []fileEntry, segs int, raw int64, agent childResult, sum onceSummary, floor childResult) error {
	if err := warm(files); err != nil {
		return err
	}
	rb, err := h.newBucket(ctx, "rclone")
	if err != nil {
		return err
	}
	rc, err := h.rcloneUp(ctx, logDir, files, rb, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", ds, err)
	}
	h.rcloneBucket[ds] = rb
	rcNote := fmt.Sprintf("`rclone copy %s :s3:BUCKET --files-from LIST` (rclone %s, Debian's package; S3 backend configured by environment, no config file; rclone's defaults: 4 transfers, its own MD5 of every file, 5 MiB multipart chunks above 200 MiB) of exactly the files the agent archives (%s), page-cached; rclone %.1f s wall, %.1f s CPU, MinIO %.1f s CPU; the agent %.1f s wall, %.1f s CPU, and it stores %s.",
		filepath.Base(logDir), h.rcloneVersion(), humanBytes(raw), rc.Wall.Seconds(), rc.CPU.Seconds(), rc.ServerCPU.Seconds(), agent.Wall.Seconds(), agent.CPU.Seconds(), humanBytes(sum.stored))
	h.rep.add(row{ID: "archive.vs_rclone." + ds, Group: "archive", Name: "Archive throughput vs `rclone copy`", Dataset: ds,
		Value: float64(raw) / mib / agent.Wall.Seconds(), Unit: "MiB/s", Baseline: "rclone copy of the same files",
		BaselineValue: float64(raw) / mib / rc.Wall.Seconds(), Better: "higher", Target: atLeast(1.6), Notes: rcNote,
		Stage: h.stage("the agent", agent, floor.CPU, sum.stored, 0),
		Extra: map[string]float64{"rclone_wall_s": rc.Wall.Seconds(), "rclone_cpu_s": rc.CPU.Seconds(), "rclone_minio_cpu_s": rc.ServerCPU.Seconds(), "rclone_peak_rss_mib": float64(rc.MaxRSS) / mib}})

	// Both held to 100 MiB/s of upload.
	if err := warm(files); err != nil {
		return err
	}
	lb, err := h.newBucket(ctx, "rclone-bw")
	if err != nil {
		return err
	}
	rcl, err := h.rcloneUp(ctx, logDir, files, lb, bandwidthLimit)
	h.removeBucket(ctx, lb)
	if err != nil {
		return fmt.Errorf("%s (bandwidth-limited): %w", ds, err)
	}
	if err := warm(files); err != nil {
		return err
	}
	ab, err := h.newBucket(ctx, "archive-bw")
	if err != nil {
		return err
	}
	state := filepath.Join(h.work, "state-archive-bw-"+ds)
	al, lsum, _, err := h.agentOnceAll(ctx, logDir, ab, state, segs, "--upload-bandwidth", strconv.Itoa(bandwidthLimit))
	os.RemoveAll(state)
	h.removeBucket(ctx, ab)
	if err != nil {
		return fmt.Errorf("%s (bandwidth-limited): %w", ds, err)
	}
	h.rep.add(row{ID: "archive.vs_rclone_100MiBps." + ds, Group: "archive", Name: "Archive throughput vs `rclone copy`, both held to 100 MiB/s of upload", Dataset: ds,
		Value: float64(raw) / mib / al.Wall.Seconds(), Unit: "MiB/s", Baseline: "rclone copy --bwlimit 100M of the same files",
		BaselineValue: float64(raw) / mib / rcl.Wall.Seconds(), Better: "higher", Target: atLeast(3),
		Notes: fmt.Sprintf("segvault `agent --once --upload-bandwidth %d` (its upload limit, on stored bytes) stored %s in %.1f s (%.0f MiB/s of stored bytes); rclone --bwlimit 100M sent %s in %.1f s (%.0f MiB/s). Figures are raw bytes ÷ wall time.",
			bandwidthLimit, humanBytes(lsum.stored), al.Wall.Seconds(), float64(lsum.stored)/mib/al.Wall.Seconds(), humanBytes(raw), rcl.Wall.Seconds(), float64(raw)/mib/rcl.Wall.Seconds()),
		Stage: h.stage("the agent", al, floor.CPU, lsum.stored, bandwidthLimit),
		Extra: map[string]float64{"agent_wall_s": al.Wall.Seconds(), "agent_cpu_s": al.CPU.Seconds(), "stored_bytes": float64(lsum.stored), "rclone_wall_s": rcl.Wall.Seconds(), "rclone_cpu_s": rcl.CPU.Seconds()}})
	return nil
}

// rcloneVersion is the first line of `rclone version`, cached.
func (h *harness) rcloneVersion() string {
	if h.rcloneVer == "" {
		out, _ := exec.Command(h.o.rclone, "version").Output()
		line, _, _ := strings.Cut(string(out), "\n")
		h.rcloneVer = strings.TrimPrefix(strings.TrimSpace(line), "rclone ")
	}
	return h.rcloneVer
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
			Stage: h.stage("restore", res, 0, stored, 0),
			Extra: map[string]float64{"restore_wall_s": res.Wall.Seconds(), "plain_wall_s": plain.Wall.Seconds(), "raw_bytes": float64(rr.Bytes), "stored_bytes": float64(stored),
				"restore_peak_rss_mib": float64(res.MaxRSS) / mib, "plain_peak_rss_mib": float64(plain.MaxRSS) / mib}})
		h.rep.add(row{ID: "restore.cpu." + ds, Group: "restore", Name: "Restore CPU time per GiB written (user+sys)", Dataset: ds,
			Value: res.CPU.Seconds() / gib(rr.Bytes), Unit: "s/GiB", Baseline: "minio-go GetObject of the same objects to files",
			BaselineValue: plain.CPU.Seconds() / gib(rr.Bytes), Better: "lower"})
		if rb := h.rcloneBucket[ds]; rb != "" {
			rdest := filepath.Join(h.work, "rclone-down-"+ds)
			rc, err := h.rcloneDown(ctx, rb, rdest)
			os.RemoveAll(rdest)
			h.removeBucket(ctx, rb)
			delete(h.rcloneBucket, ds)
			if err != nil {
				return fmt.Errorf("%s: %w", ds, err)
			}
			h.rep.add(row{ID: "restore.vs_rclone." + ds, Group: "restore", Name: "Restore throughput vs `rclone copy` down + fsync", Dataset: ds,
				Value: float64(rr.Bytes) / mib / res.Wall.Seconds(), Unit: "MiB/s", Baseline: "rclone copy of rclone's own upload of the same files, then fsync of every file",
				BaselineValue: float64(rr.Bytes) / mib / rc.Wall.Seconds(), Better: "higher", Target: atLeast(1.5),
				Notes: fmt.Sprintf("`rclone copy :s3:BUCKET DIR` (rclone defaults: 4 transfers, MD5 check of every file) of the raw files rclone uploaded in the archive step (%s), then a child that fsyncs every file and directory; %.1f s wall, %.1f s CPU in all. segvault restore: %.1f s wall, %.1f s CPU, %s fetched.",
					humanBytes(rr.Bytes), rc.Wall.Seconds(), rc.CPU.Seconds(), res.Wall.Seconds(), res.CPU.Seconds(), humanBytes(stored)),
				Stage: h.stage("restore", res, 0, stored, 0),
				Extra: map[string]float64{"rclone_fsync_wall_s": rc.Wall.Seconds(), "rclone_fsync_cpu_s": rc.CPU.Seconds(), "restore_wall_s": res.Wall.Seconds(), "restore_cpu_s": res.CPU.Seconds()}})
		}
	}
	return nil
}
