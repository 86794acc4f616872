package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segvault/segvault/internal/miniotest"
)

// The second baseline (rclone copy), the one-pass floor as a child
// process, the previous run's small-segment figure and the "slowest stage"
// inference: the parts of issue 14's figures the original harness lacked.

// bandwidthLimit is the upload limit both sides are held to in the
// bandwidth-limited comparison: 100 MiB/s (rclone's --bwlimit 100M is
// MiB/s; segvault's --upload-bandwidth is bytes per second).
const bandwidthLimit = 100 << 20

// rcloneEnv configures rclone's S3 backend for the MinIO server through
// the environment: an on-the-fly ":s3:" remote, no config file.
func (h *harness) rcloneEnv() []string {
	return []string{
		"RCLONE_CONFIG=" + filepath.Join(h.work, "rclone-none.conf"), // never written: no config file
		"RCLONE_S3_PROVIDER=Minio",
		"RCLONE_S3_ENV_AUTH=false",
		"RCLONE_S3_ACCESS_KEY_ID=" + miniotest.AccessKey,
		"RCLONE_S3_SECRET_ACCESS_KEY=" + miniotest.SecretKey,
		"RCLONE_S3_ENDPOINT=" + h.srv.URL(),
		"RCLONE_S3_REGION=us-east-1",
		"RCLONE_S3_NO_CHECK_BUCKET=true",
		// The endpoint is plain http on loopback; a CA bundle inherited from
		// the environment would only make the AWS SDK refuse rclone's
		// transport ("unable to load custom CA bundle").
		"AWS_CA_BUNDLE=",
	}
}

// rcloneAvailable says whether the rclone baseline can run; without it the
// rclone rows are left out and a warning says why.
func (h *harness) rcloneAvailable() bool {
	if h.o.rclone == "" {
		return false
	}
	if _, err := exec.LookPath(h.o.rclone); err != nil {
		return false
	}
	return true
}

func (h *harness) rcloneMissing() {
	if !h.rcloneWarned {
		h.rcloneWarned = true
		h.rep.Warnings = append(h.rep.Warnings, fmt.Sprintf("rclone (-rclone %q) is not available, so the rclone rows are missing: `make bench` installs Debian's rclone under .tools/bin.", h.o.rclone))
	}
}

// rcloneUp is `rclone copy` of the listed files (keys relative to logDir)
// to a bucket, optionally held to bwlimit bytes/s.
func (h *harness) rcloneUp(ctx context.Context, logDir string, files []fileEntry, bucket string, bwlimit int64) (childResult, error) {
	var rel []string
	for _, f := range files {
		rel = append(rel, f.key)
	}
	list := filepath.Join(h.work, "rclone-"+bucket+".txt")
	if err := writeList(list, rel); err != nil {
		return childResult{}, err
	}
	args := []string{"copy", logDir, ":s3:" + bucket, "--files-from", list, "-q"}
	if bwlimit > 0 {
		args = append(args, "--bwlimit", strconv.FormatInt(bwlimit>>20, 10)+"M")
	}
	r, err := h.runChildEnv(ctx, h.rcloneEnv(), h.o.rclone, args...)
	if err != nil {
		return r, fmt.Errorf("rclone copy up: %w", err)
	}
	return r, nil
}

// rcloneDown is `rclone copy` of a bucket into dest followed by an fsync
// of every file and dir (a separate child: benchrun -child fsync); the
// result sums both.
func (h *harness) rcloneDown(ctx context.Context, bucket, dest string) (childResult, error) {
	r, err := h.runChildEnv(ctx, h.rcloneEnv(), h.o.rclone, "copy", ":s3:"+bucket, dest, "-q")
	if err != nil {
		return r, fmt.Errorf("rclone copy down: %w", err)
	}
	me, err := self()
	if err != nil {
		return r, err
	}
	s, err := h.runChild(ctx, me, "-child", "fsync", "-dest", dest)
	if err != nil {
		return r, fmt.Errorf("fsync after rclone: %w", err)
	}
	r.Wall += s.Wall
	r.CPU += s.CPU
	r.ServerCPU += s.ServerCPU
	r.MaxRSS = max(r.MaxRSS, s.MaxRSS)
	r.SysBusy = (r.SysBusy + s.SysBusy) / 2
	return r, nil
}

// onePassChild runs the one-pass floor over the files in a child process
// and returns its rusage and result.
func (h *harness) onePassChild(ctx context.Context, list string) (childResult, onePassResult, error) {
	var res onePassResult
	me, err := self()
	if err != nil {
		return childResult{}, res, err
	}
	r, err := h.runChild(ctx, me, "-child", "onepass", "-list", list)
	if err != nil {
		return r, res, fmt.Errorf("one-pass floor: %w", err)
	}
	if _, err := fmt.Sscan(r.Stdout, &res.Raw, &res.Zstd, &res.Stored); err != nil {
		return r, res, fmt.Errorf("one-pass floor: output %q: %w", r.Stdout, err)
	}
	return r, res, nil
}

// previousRow finds a row of the newest earlier result file of this mode
// in the output dir that git tracks (committed or staged), so "no slower
// than today" compares with a result the repository holds; without git,
// every result file counts.
type previousFigure struct {
	File  string
	Date  string
	Row   row
	Found bool
}

func findPrevious(outDir, mode, id string) previousFigure {
	var names []string
	if out, err := exec.Command("git", "-C", outDir, "ls-files", "--", ".").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			names = append(names, filepath.Base(l))
		}
	} else if ents, err := os.ReadDir(outDir); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names))) // timestamped names sort by time
	for _, n := range names {
		if !strings.HasSuffix(n, "-"+mode+".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(outDir, n))
		if err != nil {
			continue
		}
		var r report
		if json.Unmarshal(data, &r) != nil {
			continue
		}
		for _, x := range r.Rows {
			if x.ID == id && x.Value > 0 {
				return previousFigure{File: n, Date: r.Date, Row: *x, Found: true}
			}
		}
	}
	return previousFigure{}
}

// stage names what limits a measured run, from what the harness can see:
// the limit it set, the CPU the process and MinIO used, the machine-wide
// CPU busy fraction over the same interval, and the one-pass floor's CPU
// for the same bytes (0 if not measured). It is an inference, said so.
func (h *harness) stage(who string, r childResult, floorCPU time.Duration, sent int64, limit int64) string {
	w := r.Wall.Seconds()
	if w <= 0 {
		return ""
	}
	cores := float64(h.rep.Machine.Cores)
	own, srv := r.CPU.Seconds()/w, r.ServerCPU.Seconds()/w
	facts := fmt.Sprintf("%s used %.2f cores, MinIO %.2f, the whole machine was %.0f%% busy over the run (%d cores, other agents' work included)",
		who, own, srv, 100*r.SysBusy, int(cores))
	if floorCPU > 0 && r.CPU > 0 {
		facts += fmt.Sprintf("; the one-pass floor's CPU for the same bytes is %.0f%% of %s's", 100*floorCPU.Seconds()/r.CPU.Seconds(), who)
	}
	rate := float64(sent) / mib / w
	switch {
	case limit > 0 && rate >= 0.8*float64(limit)/mib:
		return fmt.Sprintf("the upload limit (%s sent %.0f MiB/s of stored bytes against %d MiB/s); %s.", who, rate, limit>>20, facts)
	case r.SysBusy >= 0.9:
		big := who
		if srv > own {
			big = "MinIO"
		}
		if other := r.SysBusy*cores - own - srv; other > max(own, srv) {
			big = fmt.Sprintf("other work on the shared machine (%.2f cores), so this figure mostly measures the contention", other)
		}
		return fmt.Sprintf("CPU: the cores were saturated and the largest measured consumer was %s; %s.", big, facts)
	case own >= 0.8 && own <= 1.2 && cores > 1:
		serial := "reading, hashing and compressing one file on one goroutine"
		if who == "restore" {
			serial = "fetching, decompressing, hashing and writing one file on one goroutine"
		}
		return fmt.Sprintf("one core: %s ran at about one core while others were free, so a serial stage bounds it (for a large file: %s); %s.", who, serial, facts)
	default:
		return fmt.Sprintf("neither CPU nor a bandwidth limit was saturated, so the time is spent waiting (store round trips, fsync, the commit protocol); %s.", facts)
	}
}

// sysBusy reads the machine-wide busy and total jiffies from /proc/stat.
func sysBusy() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, s := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		v, _ := strconv.ParseInt(s, 10, 64)
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}
