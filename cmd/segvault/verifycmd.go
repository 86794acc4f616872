package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

func verifyCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options, for --scrub)", EnvVars: env("config")},
		&cli.BoolFlag{Name: "deep", Usage: "decompress and parse every record (default: batch framing, lengths, CRCs, offsets)"},
		&cli.BoolFlag{Name: "scrub", Usage: "verify the archive at --bucket instead of local files: re-read every object and check it against its manifest"},
		&cli.Float64Flag{Name: "sample", Value: 1, Usage: "with --scrub: fraction of segments to re-read (0..1)"},
		&cli.BoolFlag{Name: "json", Usage: "print results as JSON"},
	}, storeFlags()...)
	return &cli.Command{
		Name:      "verify",
		Usage:     "check Kafka log files offline, or scrub the archive",
		ArgsUsage: "PATH...",
		Description: `Checks segment files, partition dirs or whole log dirs without a broker: every batch's framing,
length, magic, CRC and offsets (--deep: every record), the .index/.timeindex/.txnindex files
against their .log, producer snapshots, leader-epoch-checkpoint, partition.metadata,
meta.properties and the offset checkpoints. A file still being written (a torn tail in a
partition's last segment) is reported, not counted as corruption.

With --scrub it reads the archive instead: every (or a --sample of) object is downloaded and
checked against its manifest's sizes and digests, and every .log is re-validated.

Exit status: 0 all good, 1 corruption found, 2 usage or I/O errors.

Examples:
  segvault verify /var/lib/kafka/data
  segvault verify --deep /var/lib/kafka/data/orders-3/00000000000000120000.log
  segvault verify --scrub --bucket s3://kafka-archive --sample 0.1`,
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc("config")),
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
	var results []fileResult
	for _, p := range c.Args().Slice() {
		r, err := verifyPath(p, c.Bool("deep"))
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		results = append(results, r...)
	}
	return reportResults(c, results)
}

func reportResults(c *cli.Context, results []fileResult) error {
	w := c.App.Writer
	bad, ioErr := 0, 0
	for _, r := range results {
		switch r.Status {
		case "corrupt":
			bad++
		case "error":
			ioErr++
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
		fmt.Fprintf(w, "%d files checked: %d corrupt, %d unreadable\n", len(results), bad, ioErr)
	}
	switch {
	case bad > 0:
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
		return []fileResult{verifyFile(p, deep, false)}, nil
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
		if isRootFile(e.Name()) {
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
		if ok && (n.Kind == segment.KindIndex || n.Kind == segment.KindTimeIndex || n.Kind == segment.KindTxnIndex) {
			continue // checked with their .log
		}
		if !ok && e.Name() != index.LeaderEpochCheckpointFile && e.Name() != index.PartitionMetadataFile {
			continue
		}
		isLast := ok && n.Kind == segment.KindLog && n.BaseOffset == active
		out = append(out, verifyFile(filepath.Join(dir, e.Name()), deep, isLast))
	}
	return out, nil
}

// verifyFile checks one file by its name; .log files bring their indexes.
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
	if n, ok := segment.ParseFileName(name); ok {
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
			if n.Kind == segment.KindLog {
				if err := verifyIndexes(path, f, size, n.BaseOffset, active); err != nil {
					return fail(err)
				}
			}
		case segment.KindSnapshot:
			if _, err := index.DecodeProducerSnapshot(path, data); err != nil {
				return fail(err)
			}
		default:
			res.Status, res.Detail = "ok", ""
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

// openForVerify opens .log-like files for streaming and reads small ones.
func openForVerify(path string) ([]byte, int64, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if n, ok := segment.ParseFileName(filepath.Base(path)); ok && (n.Kind == segment.KindLog || n.Kind == segment.KindCheckpoint) {
		return nil, fi.Size(), f, nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 256<<20))
	return data, fi.Size(), nil, err
}

// verifyIndexes checks a segment's .index/.timeindex/.txnindex against it.
// The active segment's indexes are preallocated and still growing: skipped.
func verifyIndexes(logPath string, f *os.File, size, base int64, active bool) error {
	if active {
		return nil
	}
	read := func(ext string) []byte {
		b, err := os.ReadFile(strings.TrimSuffix(logPath, ".log") + ext)
		if err != nil {
			return nil
		}
		return b
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	rep, err := index.VerifySegment(f, size, logPath, index.SideFiles{Index: read(".index"), TimeIndex: read(".timeindex"), TxnIndex: read(".txnindex")},
		index.VerifyOptions{BaseOffset: base})
	if err != nil {
		return err
	}
	if rep.Corrupt() {
		var msgs []string
		for _, fr := range []index.FileReport{rep.Index, rep.TimeIndex, rep.TxnIndex} {
			for _, pr := range fr.Problems {
				if pr.Corrupt {
					msgs = append(msgs, fmt.Sprintf("%s: byte %d (entry %d): %s check failed: %s", fr.Name, pr.Pos, pr.Entry, pr.Check, pr.Detail))
					break
				}
			}
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// runScrub re-reads the archive and checks it against its manifests.
func runScrub(c *cli.Context) error {
	ctx := c.Context
	b, layout, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	dopts, err := decodeOptions(c)
	if err != nil {
		return err
	}
	results, err := scrub(ctx, b, layout, dopts, c.Float64("sample"), c.Bool("deep"))
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	return reportResults(c, results)
}

func scrub(ctx context.Context, b uploader.Bucket, layout uploader.Layout, dopts uploader.DecodeOptions, sample float64, deep bool) ([]fileResult, error) {
	var keys []string
	if err := b.List(ctx, layout.Root(), func(oi uploader.ObjectInfo) error {
		if uploader.IsManifestKey(oi.Key) {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []fileResult
	for i, key := range keys {
		if sample < 1 && float64(i%1000) >= sample*1000 {
			continue
		}
		data, err := uploader.ReadAll(ctx, b, key, uploader.MaxManifestSize)
		if err != nil {
			out = append(out, fileResult{Path: key, Kind: "manifest", Status: "error", Detail: err.Error()})
			continue
		}
		m, err := uploader.DecodeSegmentManifest(key, data)
		if err != nil {
			out = append(out, fileResult{Path: key, Kind: "manifest", Status: "corrupt", Detail: err.Error()})
			continue
		}
		for j, f := range m.Files {
			r := fileResult{Path: f.Object.Key, Kind: strings.TrimPrefix(filepath.Ext(f.Name), "."), Bytes: f.Size, Status: "ok"}
			rc, err := uploader.OpenVerified(ctx, b, f, dopts)
			if err != nil {
				r.Status, r.Detail = "error", err.Error()
				if errors.Is(err, uploader.ErrNotFound) {
					r.Status, r.Detail = "corrupt", fmt.Sprintf("%s: object named by manifest %s is missing", f.Object.Key, key)
				}
				out = append(out, r)
				continue
			}
			var rerr error
			if j == 0 {
				base := m.BaseOffset
				if m.Kind == uploader.KindKRaftSnapshot {
					base = -1
				}
				var sum *segment.Summary
				sum, rerr = segment.Scan(rc, f.Size, f.Object.Key, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: base}, Deep: deep})
				if sum != nil {
					r.Batches, r.Records = sum.Batches, sum.Records
				}
				if rerr == nil {
					_, rerr = io.Copy(io.Discard, rc) // reach EOF: the digests are checked there
				}
			} else {
				_, rerr = io.Copy(io.Discard, rc)
			}
			rc.Close()
			if rerr != nil {
				r.Status, r.Detail = "corrupt", rerr.Error()
				if !errors.Is(rerr, uploader.ErrIntegrity) && !errors.Is(rerr, segment.ErrCorrupt) && !segment.IsTruncated(rerr) {
					r.Status = "error"
				}
			}
			out = append(out, r)
		}
	}
	return out, nil
}
