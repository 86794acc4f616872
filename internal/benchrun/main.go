// Command benchrun measures segvault against baselines measured in the same
// run on the same machine, and writes one Markdown table and one JSON file
// under bench/results/ (`make bench`, `make bench-quick`).
//
// Every figure is reported beside a baseline that does the least any tool
// must do for the same job (read + CRC-32C for verification, a plain
// minio-go PutObject/GetObject for archive and restore, ...), measured
// moments apart, so ratios stay meaningful on a noisy shared machine where
// absolute numbers do not. docs/PERFORMANCE.md explains each figure.
//
// It starts a real MinIO server on loopback (internal/miniotest), builds its
// datasets with the simulated broker (internal/brokersim: real franz-go
// batches), drives the real segvault binary as a child process (so CPU time
// and peak RSS come from the kernel's rusage for that process alone), and
// calls the segment package directly for verification throughput.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/segvault/segvault/internal/miniotest"
)

type options struct {
	quick    bool
	segvault string
	rclone   string
	out      string
	work     string
	keep     bool
	doc      string
	only     map[string]bool
}

// sizes are the dataset dimensions of a mode.
type sizes struct {
	Mode             string  `json:"mode"`
	BigSegmentBytes  int64   `json:"big_segment_bytes"`  // each of the "large segment" files
	SmallCopies      int     `json:"small_partitions"`   // partitions of 1 MiB segments
	VerifyBytes      int64   `json:"verify_bytes"`       // per-codec verification file
	ShallowBytes     int64   `json:"shallow_bytes"`      // the uncompressed file, for shallow verify vs the floor
	ScanPartitions   int     `json:"scan_partitions"`    // startup-scan tree
	ScanSegments     int     `json:"scan_segments_each"` // rolled segments per partition in it
	Rolls            int     `json:"rolls"`              // roll-to-archive samples
	PageCacheParts   int     `json:"pagecache_partitions"`
	VerifyRounds     int     `json:"verify_rounds"`
	VerifyMinSeconds float64 `json:"verify_min_seconds"` // per measurement of a round
}

func modeSizes(quick bool) sizes {
	if quick {
		return sizes{Mode: "quick", BigSegmentBytes: 64 << 20, SmallCopies: 8, VerifyBytes: 16 << 20, ShallowBytes: 16 << 20,
			ScanPartitions: 2000, ScanSegments: 5, Rolls: 3, PageCacheParts: 4, VerifyRounds: 3, VerifyMinSeconds: 0.25}
	}
	return sizes{Mode: "full", BigSegmentBytes: 1 << 30, SmallCopies: 128, VerifyBytes: 128 << 20, ShallowBytes: 1 << 30,
		ScanPartitions: 10000, ScanSegments: 5, Rolls: 8, PageCacheParts: 16, VerifyRounds: 3, VerifyMinSeconds: 0.5}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		os.Exit(childMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "-compare" {
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: benchrun -compare OLD.json NEW.json")
			os.Exit(2)
		}
		md, err := compareReports(os.Args[2], os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchrun -compare:", err)
			os.Exit(1)
		}
		fmt.Print(md)
		return
	}
	var o options
	var only string
	flag.BoolVar(&o.quick, "quick", false, "reduced dataset sizes (under two minutes)")
	flag.StringVar(&o.segvault, "segvault", "bin/segvault", "the segvault binary to measure")
	flag.StringVar(&o.rclone, "rclone", ".tools/bin/rclone", "the rclone binary of the second baseline (make bench installs Debian's); missing: those rows are left out")
	flag.StringVar(&o.out, "out", "bench/results", "directory for latest.md, latest.json and timestamped copies")
	flag.StringVar(&o.work, "work", "", "scratch directory (default: a new temp dir, removed at the end)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory")
	flag.StringVar(&o.doc, "doc", "", "also paste the table into this Markdown file, between <!-- benchrun:begin --> and <!-- benchrun:end -->")
	flag.StringVar(&only, "only", "", "comma-separated sections to run (verify,archive,restore,scan,latency,pagecache); default all")
	flag.Parse()
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			o.only[strings.TrimSpace(s)] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun FAILED:", err)
		os.Exit(1)
	}
}

func (o *options) want(section string) bool { return o.only == nil || o.only[section] }

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(ctx context.Context, o options) error {
	start := time.Now()
	sz := modeSizes(o.quick)
	bin, err := filepath.Abs(o.segvault)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return fmt.Errorf("-segvault %s: not a file (run make build): %v", bin, err)
	}
	o.segvault = bin
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "segvault-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(o.work)
	}
	rep := newReport(sz, o.segvault)
	logf("benchrun %s mode, work dir %s, %d CPUs, load average %s", sz.Mode, o.work, rep.Machine.Cores, rep.Machine.LoadAvgStart)

	srv, err := miniotest.Launch(filepath.Join(o.work, "minio"))
	if err != nil {
		return fmt.Errorf("start MinIO (make tools installs it): %w", err)
	}
	defer srv.Stop()
	logf("MinIO on %s", srv.Endpoint())

	h := &harness{o: o, sz: sz, srv: srv, rep: rep, work: o.work}
	rep.NotMeasured = []string{
		"Cold-cache (disk-bound) reads: every measurement reads page-cached files, so the figures are CPU and software limits, not this VM's shared disk.",
		"A real network: MinIO runs on loopback on the same two cores, so there is no network latency or bandwidth limit, and the server competes with the agent for CPU (its CPU seconds are in the notes).",
		"Client-side encryption (--encryption-key-file) and server-side encryption in the end-to-end runs; the encoding cost with encryption is covered by `go test -bench Encode ./archive`.",
		"The agent at its default low priority (nice 10, idle I/O class): every measured agent runs with --normal-priority so it competes with the baseline, and with the machine's other work, on equal terms.",
		"A real Kafka broker writing at the same time (brokersim stands in for it; the roll-latency run produces while the agent works).",
	}
	steps := []struct {
		name, section string
		fn            func(context.Context) error
	}{
		{"datasets", "", h.makeDatasets},
		{"verify", "verify", h.benchVerify},
		{"archive", "archive", h.benchArchive},
		{"restore", "restore", h.benchRestore},
		{"pagecache", "pagecache", h.benchPageCache},
		{"startup scan", "scan", h.benchStartupScan},
		{"roll latency", "latency", h.benchRollLatency},
		{"tail cost", "tail", h.benchTailCost},
	}
	var errs []error
	for _, s := range steps {
		if s.section != "" && !o.want(s.section) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t0 := time.Now()
		if rep.StepLoadAvg == nil {
			rep.StepLoadAvg = map[string]string{}
		}
		rep.StepLoadAvg[s.name] = loadAvg()
		logf("== %s (load average %s)", s.name, rep.StepLoadAvg[s.name])
		if err := s.fn(ctx); err != nil {
			if s.section == "" {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			logf("!! %s failed: %v", s.name, err)
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", s.name, err))
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
		rep.StepSeconds[s.name] = time.Since(t0).Seconds()
		logf("   %s took %s", s.name, time.Since(t0).Round(100*time.Millisecond))
	}
	rep.finish(start)
	paths, err := rep.write(o.out)
	if err != nil {
		return err
	}
	fmt.Println(rep.markdown())
	if o.doc != "" {
		if err := pasteInto(o.doc, rep.markdown()); err != nil {
			return err
		}
		paths = append(paths, o.doc)
	}
	logf("wrote %s in %s total", strings.Join(paths, ", "), time.Since(start).Round(time.Second))
	return errors.Join(errs...)
}
