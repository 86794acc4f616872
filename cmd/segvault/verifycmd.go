package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/inspect"
	"github.com/segvault/segvault/uploader"
)

func verifyCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options, for --scrub)", EnvVars: env("config")},
		&cli.BoolFlag{Name: "deep", Usage: "decompress and parse every record (default: batch framing, lengths, CRCs, offsets)"},
		&cli.BoolFlag{Name: "scrub", Usage: "verify the archive at --bucket instead of local files: re-read every object and check it against its manifest"},
		&cli.Float64Flag{Name: "sample", Value: 1, Usage: "with --scrub: fraction of the manifests whose objects are re-read, in (0,1]; each run reads a different part (see --scrub-state)"},
		&cli.StringFlag{Name: "scrub-state", Usage: "with --scrub --sample: file keeping the rotation cursor, so ceil(1/sample) runs re-read everything (without it each run starts at a position chosen by the clock)"},
		&cli.BoolFlag{Name: "allow-empty", Usage: "exit 0 when nothing was checked (an empty archive, a dir without Kafka files)"},
		&cli.BoolFlag{Name: "json", Usage: "print results as JSON"},
	}, storeFlags()...)
	return &cli.Command{
		Name:      "verify",
		Usage:     "check Kafka log files offline, or scrub the archive",
		ArgsUsage: "PATH...",
		Description: `Checks segment files, partition dirs or whole log dirs without a broker: every batch's framing,
length, magic, CRC and offsets (--deep: every record decompressed and parsed), the
.index/.timeindex/.txnindex files against their .log, producer snapshots, KRaft snapshots
(<offset>-<epoch>.checkpoint, bootstrap.checkpoint: also their SnapshotHeader and
SnapshotFooter), leader-epoch-checkpoint, partition.metadata, meta.properties and the offset
checkpoints. An index file given on its own is checked against its .log too. A file still
being written (a torn tail in a partition's last segment) is reported as TRUNCATED, not
counted as corruption; the last segment's indexes, still growing, are not checked.

Prints one line per file (STATUS KIND BYTES BATCHES RECORDS PATH), then the problems, each
naming the file and byte position, then a summary; --json prints the same as a JSON array.

With --scrub it reads the archive instead: every manifest (segment, KRaft snapshot, log-dir
capture, gap marker, tail capture, partition claim, prune deletion mark; format v1 and v2) is
read and decoded, and every object the manifests name (or those of a
--sample of the manifests) is downloaded and checked against its manifest's sizes and digests;
every .log and KRaft snapshot is re-validated. An object that fails is read once more before it
is reported CORRUPT. Objects a manifest names but the store lacks are MISSING; objects no
manifest names are listed as ORPHAN (an interrupted upload; not a failure). --sample F reads the
objects of ceil(F*N) of the N manifests, a different window each run: with --scrub-state FILE the
window continues where the last run stopped (ceil(1/F) runs cover everything), without it the
window starts at a position chosen by the clock.

Exit status: 0 all good (truncated active segments included), 1 corruption or missing objects
found, or nothing checked (an empty archive or prefix, a dir without Kafka files; --allow-empty
makes that 0), 2 usage or I/O errors (a --bucket file:// directory or S3 bucket that does not
exist, --sample outside (0,1]).

Examples:
  segvault verify /var/lib/kafka/data
  segvault verify --deep /var/lib/kafka/data/orders-3/00000000000000120000.log
  segvault verify --json /var/lib/kafka/data/orders-3 | jq '.[] | select(.status != "ok")'
  segvault verify --scrub --bucket s3://kafka-archive --sample 0.1`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runVerify,
	}
}

// fileResult is one row of verify's output (inspect.FileResult; the scrub
// fills them too).
type fileResult = inspect.FileResult

func runVerify(c *cli.Context) error {
	if c.Bool("scrub") {
		return runScrub(c)
	}
	if c.NArg() == 0 {
		return usageErr("verify: give at least one PATH (a file, partition dir or log dir), or --scrub")
	}
	results := []fileResult{}
	for _, p := range c.Args().Slice() {
		r, err := inspect.VerifyPath(p, c.Bool("deep"))
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if len(r) == 0 && !c.Bool("allow-empty") {
			return &exitError{code: exitFailure, err: fmt.Errorf("nothing checked in %s: no Kafka segment, partition dir or log-dir file there (--allow-empty accepts it)", p)}
		}
		results = append(results, r...)
	}
	return reportResults(c, results)
}

func reportResults(c *cli.Context, results []fileResult) error {
	w := c.App.Writer
	bad, ioErr, missing, orphans := 0, 0, 0, 0
	for _, r := range results {
		switch r.Status {
		case "corrupt":
			bad++
		case "error":
			ioErr++
		case "missing":
			missing++
		case "orphan":
			orphans++
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STATUS\tKIND\tBYTES\tBATCHES\tRECORDS\tPATH")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", strings.ToUpper(r.Status), r.Kind, r.Bytes, r.Batches, r.Records, r.Path)
		}
		tw.Flush()
		for _, r := range results {
			if r.Detail != "" {
				fmt.Fprintf(w, "%s: %s\n", strings.ToUpper(r.Status), r.Detail)
			}
		}
		if c.Bool("scrub") {
			fmt.Fprintf(w, "%d files checked: %d corrupt, %d unreadable, %d missing, %d orphaned (no manifest references them)\n", len(results)-orphans, bad, ioErr, missing, orphans)
		} else {
			fmt.Fprintf(w, "%d files checked: %d corrupt, %d unreadable\n", len(results), bad, ioErr)
		}
	}
	switch {
	case bad > 0 || missing > 0:
		return &exitError{code: exitFailure}
	case ioErr > 0:
		return &exitError{code: exitUsage}
	}
	return nil
}

// runScrub re-reads the archive and checks it against its manifests.
func runScrub(c *cli.Context) error {
	ctx := c.Context
	sample := c.Float64("sample")
	if math.IsNaN(sample) || sample <= 0 || sample > 1 {
		return usageErr("--sample %v: want a fraction of the archive's manifests in (0,1], e.g. 0.05 (1: everything)", sample)
	}
	if c.String("scrub-state") != "" && !c.IsSet("sample") {
		return usageErr("--scrub-state keeps the --sample rotation: give --sample too")
	}
	b, layout, err := openExistingStore(ctx, c)
	if err != nil {
		return err
	}
	dopts, err := decodeOptions(c)
	if err != nil {
		return err
	}
	sel := scrubSelection{fraction: sample, statePath: c.String("scrub-state"), store: b.String() + " " + layout.Root(), pending: new([]byte)}
	results, err := scrub(ctx, b, layout, dopts, sel, c.Bool("deep"))
	if ctx.Err() != nil {
		// Stopped: the objects not matched yet are not orphans and the
		// reads the stop cut short are not unreadable; no summary (exit 130).
		// The cursor stays: the next run reads this window again.
		return ctx.Err()
	}
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if len(*sel.pending) > 0 {
		if err := saveScrubCursor(sel.statePath, *sel.pending); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	if err := reportResults(c, results); err != nil {
		return err
	}
	if checkedNothing(results) && !c.Bool("allow-empty") {
		return &exitError{code: exitFailure, err: fmt.Errorf("nothing checked: no manifest under %q in %s (wrong --bucket or --prefix? --allow-empty accepts an empty archive)", layout.Root(), b.String())}
	}
	return nil
}

// checkedNothing reports whether results hold no file actually checked
// (orphans are listed, not checked).
func checkedNothing(results []fileResult) bool {
	for _, r := range results {
		if r.Status != "orphan" {
			return false
		}
	}
	return true
}

// scrubSelection chooses which manifests a --sample run reads. With a state
// file, runs rotate through the manifests in key order from a saved cursor,
// so ceil(1/fraction) runs read everything; without one, the window of
// ceil(fraction*N) manifests starts at a position seeded by the run time.
type scrubSelection struct {
	fraction  float64
	statePath string
	store     string // the cursor is only reused for the same store and prefix
	// pending, when set, receives the new cursor instead of the file:
	// runScrub saves it only once the run has read its whole window.
	pending *[]byte
}

// choose returns the indexes of keys (sorted) to read, and saves the cursor
// (archive.Sample).
func (s scrubSelection) choose(keys []string) ([]int, error) {
	return archive.Sample{Fraction: s.fraction, StatePath: s.statePath, Store: s.store, Pending: s.pending}.Choose(keys)
}

// saveScrubCursor writes the --scrub-state file (temp file, rename).
func saveScrubCursor(statePath string, data []byte) error {
	return archive.SaveSampleCursor(statePath, data)
}

// scrub runs archive.Check (both layout roots, every manifest kind) with
// sel choosing the manifests whose objects are read back.
func scrub(ctx context.Context, b uploader.Bucket, layout archive.Layout, dopts archive.DecodeOptions, sel scrubSelection, deep bool) ([]fileResult, error) {
	res, err := archive.Check(ctx, b, layout, archive.CheckOptions{Decode: dopts, Deep: deep, Choose: sel.choose})
	if err != nil {
		return nil, err
	}
	out := make([]fileResult, 0, len(res))
	for _, r := range res {
		out = append(out, fileResult{Path: r.Path, Kind: r.Kind, Bytes: r.Bytes, Batches: r.Batches, Records: r.Records, Status: r.Status, Detail: r.Detail})
	}
	return out, nil
}
