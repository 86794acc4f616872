package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/segment"
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
capture, gap marker) is read and decoded, and every object the manifests name (or those of a
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

// fileResult is one checked file.
type fileResult struct {
	Path    string `json:"path"`
	Kind    string `json:"kind"`
	Bytes   int64  `json:"bytes"`
	Batches int64  `json:"batches,omitempty"`
	Records int64  `json:"records,omitempty"`
	Status  string `json:"status"` // ok, corrupt, truncated, error
	Detail  string `json:"detail,omitempty"`
}

func runVerify(c *cli.Context) error {
	if c.Bool("scrub") {
		return runScrub(c)
	}
	if c.NArg() == 0 {
		return usageErr("verify: give at least one PATH (a file, partition dir or log dir), or --scrub")
	}
	results := []fileResult{}
	for _, p := range c.Args().Slice() {
		r, err := verifyPath(p, c.Bool("deep"))
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

// verifyPath checks a file, a partition dir or a log dir.
func verifyPath(p string, deep bool) ([]fileResult, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		n, ok := segment.ParseFileName(filepath.Base(p))
		switch {
		case ok && n.Suffix == "" && n.Kind == segment.KindLog:
			return verifySegment(p, deep, isActiveSegment(p)), nil
		case ok && n.Suffix == "" && isIndexKind(n.Kind):
			return verifyIndexAlone(p, n), nil
		}
		r := verifyFile(p, deep, false)
		if r.Kind == "unknown" {
			return nil, nil // not a Kafka file: nothing checked
		}
		return []fileResult{r}, nil
	}
	if _, ok := segment.ParseDirName(filepath.Base(p)); ok {
		return verifyPartition(p, deep)
	}
	var out []fileResult
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		full := filepath.Join(p, e.Name())
		if e.IsDir() {
			if _, ok := segment.ParseDirName(e.Name()); ok {
				r, err := verifyPartition(full, deep)
				if err != nil {
					return nil, err
				}
				out = append(out, r...)
			}
			continue
		}
		if isRootFile(e.Name()) || e.Name() == bootstrapCheckpoint {
			out = append(out, verifyFile(full, deep, false))
		}
	}
	return out, nil
}

func isRootFile(name string) bool {
	if name == index.MetaPropertiesFile {
		return true
	}
	for _, n := range index.RootCheckpointFiles {
		if n == name {
			return true
		}
	}
	return false
}

func isIndexKind(k segment.FileKind) bool {
	return k == segment.KindIndex || k == segment.KindTimeIndex || k == segment.KindTxnIndex
}

// verifyPartition checks every file of a partition dir; a torn tail is
// tolerated only in the last (active) segment.
func verifyPartition(dir string, deep bool) ([]fileResult, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var logs []int64
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindLog && n.Suffix == "" {
			logs = append(logs, n.BaseOffset)
		}
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i] < logs[j] })
	active := int64(-1)
	if len(logs) > 0 {
		active = logs[len(logs)-1]
	}
	var out []fileResult
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		n, ok := segment.ParseFileName(e.Name())
		if ok && n.Suffix != "" {
			continue // Kafka's transient files: not part of the log
		}
		if ok && isIndexKind(n.Kind) {
			continue // checked with their .log
		}
		if !ok && e.Name() != index.LeaderEpochCheckpointFile && e.Name() != index.PartitionMetadataFile {
			continue
		}
		full := filepath.Join(dir, e.Name())
		if ok && n.Kind == segment.KindLog {
			out = append(out, verifySegment(full, deep, n.BaseOffset == active)...)
			continue
		}
		out = append(out, verifyFile(full, deep, false))
	}
	return out, nil
}

// verifySegment checks a .log, then, for a rolled segment, its index files
// against it (one row each). The active segment's indexes are preallocated
// and still growing: not checked.
func verifySegment(path string, deep, active bool) []fileResult {
	res := verifyFile(path, deep, active)
	n, _ := segment.ParseFileName(filepath.Base(path))
	if active {
		return []fileResult{res}
	}
	return append([]fileResult{res}, sideResults(path, n.BaseOffset, res.Status == "ok", allSideFiles)...)
}

// verifyIndexAlone checks an index file given on its own: against its .log
// when that is present and rolled, else its structure only.
func verifyIndexAlone(path string, n segment.FileName) []fileResult {
	logPath := strings.TrimSuffix(path, n.Kind.Ext()) + segment.KindLog.Ext()
	_, err := os.Stat(logPath)
	return sideResults(logPath, n.BaseOffset, err == nil && !isActiveSegment(logPath), n.Kind)
}

// allSideFiles asks sideResults for every index file of a segment.
const allSideFiles = segment.KindUnknown

// sideResults checks the index files (all present ones, or the one of kind
// only) of the segment at logPath: against the .log when againstLog (a
// rolled segment whose .log is valid), else their structure only.
func sideResults(logPath string, base int64, againstLog bool, only segment.FileKind) []fileResult {
	stem := strings.TrimSuffix(logPath, segment.KindLog.Ext())
	var files index.SideFiles
	var out []fileResult
	slot := map[segment.FileKind]int{}
	for _, k := range []segment.FileKind{segment.KindIndex, segment.KindTimeIndex, segment.KindTxnIndex} {
		if only != allSideFiles && k != only {
			continue
		}
		p := stem + k.Ext()
		data, err := fsutil.ReadFileRegular(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		r := fileResult{Path: p, Kind: k.String(), Bytes: int64(len(data)), Status: "ok"}
		if err != nil {
			r.Status, r.Detail = "error", err.Error()
			out = append(out, r)
			continue
		}
		switch k {
		case segment.KindIndex:
			files.Index = data
		case segment.KindTimeIndex:
			files.TimeIndex = data
		case segment.KindTxnIndex:
			files.TxnIndex = data
		}
		slot[k] = len(out)
		out = append(out, r)
	}
	if len(slot) == 0 {
		return out
	}
	if !againstLog {
		for k, i := range slot {
			var err error
			switch k {
			case segment.KindIndex:
				_, err = index.ParseOffsetIndex(out[i].Path, files.Index, base)
			case segment.KindTimeIndex:
				_, err = index.ParseTimeIndex(out[i].Path, files.TimeIndex, base)
			case segment.KindTxnIndex:
				_, err = index.ParseTxnIndex(out[i].Path, files.TxnIndex, base)
			}
			if err != nil {
				out[i].Status, out[i].Detail = "corrupt", err.Error()
			}
		}
		return out
	}
	setAll := func(status, detail string) []fileResult {
		for _, i := range slot {
			out[i].Status, out[i].Detail = status, detail
		}
		return out
	}
	f, err := fsutil.OpenRegular(logPath)
	if err != nil {
		return setAll("error", err.Error())
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return setAll("error", err.Error())
	}
	rep, err := index.VerifySegment(f, fi.Size(), logPath, files, index.VerifyOptions{BaseOffset: base})
	if err != nil && !errors.Is(err, index.ErrCorruptIndex) {
		var ce *segment.CorruptionError
		if errors.As(err, &ce) {
			return setAll("corrupt", "cannot be checked against its .log: "+err.Error())
		}
		return setAll("error", err.Error())
	}
	for k, i := range slot {
		fr := rep.Index
		switch k {
		case segment.KindTimeIndex:
			fr = rep.TimeIndex
		case segment.KindTxnIndex:
			fr = rep.TxnIndex
		}
		if !fr.Corrupt {
			continue
		}
		out[i].Status, out[i].Detail = "corrupt", out[i].Path+": corrupt"
		for _, pr := range fr.Problems {
			if pr.Corrupt {
				out[i].Detail = fmt.Sprintf("%s: entry %d at byte %d: %s check failed: %s", out[i].Path, pr.Entry, pr.Pos, pr.Check, pr.Detail)
				if pr.Entry < 0 {
					out[i].Detail = fmt.Sprintf("%s: byte %d: %s check failed: %s", out[i].Path, pr.Pos, pr.Check, pr.Detail)
				}
				break
			}
		}
	}
	return out
}

// verifyFile checks one file by its name: a .log or KRaft snapshot's
// batches (active marks a partition's last segment, whose torn tail is
// expected), or a side file's format.
func verifyFile(path string, deep, active bool) fileResult {
	res := fileResult{Path: path, Status: "ok"}
	data, size, f, err := openForVerify(path)
	if err != nil {
		res.Kind, res.Status, res.Detail = "?", "error", err.Error()
		return res
	}
	if f != nil {
		defer f.Close()
	}
	res.Bytes = size
	name := filepath.Base(path)
	fail := func(err error) fileResult {
		res.Status, res.Detail = "corrupt", err.Error()
		return res
	}
	n, ok := segment.ParseFileName(name)
	if !ok && name == bootstrapCheckpoint {
		n, ok = segment.FileName{BaseOffset: -1, Kind: segment.KindCheckpoint}, true
	}
	if ok {
		res.Kind = n.Kind.String()
		switch n.Kind {
		case segment.KindLog, segment.KindCheckpoint:
			base := n.BaseOffset
			if n.Kind == segment.KindCheckpoint {
				base = -1
			}
			sum, err := segment.Scan(f, size, path, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: base}, Deep: deep})
			if sum != nil {
				res.Batches, res.Records = sum.Batches, sum.Records
			}
			if err != nil {
				var ce *segment.CorruptionError
				if segment.IsTruncated(err) && active {
					res.Status, res.Detail = "truncated", err.Error()+" (the active segment may still be being written)"
					return res
				}
				if errors.As(err, &ce) {
					return fail(err)
				}
				res.Status, res.Detail = "error", err.Error()
				return res
			}
			if n.Kind == segment.KindCheckpoint {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					res.Status, res.Detail = "error", err.Error()
					return res
				}
				if _, err := index.VerifyKRaftSnapshot(f, size, path); err != nil {
					return fail(err)
				}
			}
		case segment.KindIndex:
			if _, err := index.ParseOffsetIndex(path, data, n.BaseOffset); err != nil {
				return fail(err)
			}
		case segment.KindTimeIndex:
			if _, err := index.ParseTimeIndex(path, data, n.BaseOffset); err != nil {
				return fail(err)
			}
		case segment.KindTxnIndex:
			if _, err := index.ParseTxnIndex(path, data, n.BaseOffset); err != nil {
				return fail(err)
			}
		case segment.KindSnapshot:
			if _, err := index.DecodeProducerSnapshot(path, data); err != nil {
				return fail(err)
			}
		}
		return res
	}
	res.Kind = name
	var perr error
	switch {
	case name == index.LeaderEpochCheckpointFile:
		_, perr = index.ParseLeaderEpochCheckpoint(path, data)
	case name == index.PartitionMetadataFile:
		_, perr = index.ParsePartitionMetadata(path, data)
	case name == index.MetaPropertiesFile:
		_, perr = index.ParseMetaProperties(path, data)
	case isRootFile(name):
		_, perr = index.ParseOffsetCheckpoint(path, data)
	default:
		res.Kind = "unknown"
	}
	if perr != nil {
		return fail(perr)
	}
	return res
}

// isActiveSegment reports whether a .log is the last segment of a partition
// dir: the one Kafka may still be appending to.
func isActiveSegment(logPath string) bool {
	abs, err := filepath.Abs(logPath)
	if err != nil {
		return false
	}
	dir := filepath.Dir(abs)
	if _, ok := segment.ParseDirName(filepath.Base(dir)); !ok {
		return false
	}
	n, ok := segment.ParseFileName(filepath.Base(abs))
	if !ok || n.Kind != segment.KindLog || n.Suffix != "" {
		return false
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if m, ok := segment.ParseFileName(e.Name()); ok && m.Kind == segment.KindLog && m.Suffix == "" && m.BaseOffset > n.BaseOffset {
			return false
		}
	}
	return true
}

// openForVerify opens .log-like files for streaming and reads small ones.
func openForVerify(path string) ([]byte, int64, *os.File, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if n, ok := segment.ParseFileName(filepath.Base(path)); ok && (n.Kind == segment.KindLog || n.Kind == segment.KindCheckpoint) || filepath.Base(path) == bootstrapCheckpoint {
		return nil, fi.Size(), f, nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 256<<20))
	return data, fi.Size(), nil, err
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
