package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/restore"
)

func restoreCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options)", EnvVars: env("config")},
		&cli.StringSliceFlag{Name: "target", Aliases: []string{"t"}, Usage: "log dir to restore into; repeat to spread partitions over several", Required: true},
		&cli.StringFlag{Name: "cluster", Usage: "cluster id (needed when the bucket holds several)"},
		&cli.IntFlag{Name: "broker", Value: -1, Usage: "restore what this broker held (its copies first, other replicas' to fill gaps)"},
		&cli.StringFlag{Name: "topic", Usage: "restore topics matching this regular expression (default: all)"},
		&cli.IntSliceFlag{Name: "partition", Usage: "restore only these partitions (repeatable)"},
		&cli.StringFlag{Name: "from-topic-id", Usage: "restore this incarnation (topic id) rather than the newest"},
		&cli.BoolFlag{Name: "whole-broker", Usage: "with --broker: also the KRaft metadata log, meta.properties, bootstrap.checkpoint and the offset checkpoints (bare-metal rebuild)"},
		&cli.BoolFlag{Name: "allow-no-metadata", Usage: "with --whole-broker: rebuild even when the archive holds no __cluster_metadata segment or snapshot of the broker (Kafka then formats a new, empty metadata log)"},
		&cli.BoolFlag{Name: "into-other-cluster", Usage: "restore into log dirs whose meta.properties names another cluster.id"},
		&cli.Int64Flag{Name: "to-offset", Value: -1, Usage: "point in time: keep records up to and including this offset (cut at a batch boundary)"},
		&cli.StringFlag{Name: "to-time", Usage: "point in time: keep batches whose max timestamp is at or before this time (RFC 3339 or Unix milliseconds, not seconds)"},
		&cli.StringFlag{Name: "open-txns", Value: "abort", Usage: "transactions still open at the end: abort (write ABORT markers, as the coordinator would), truncate (cut before them) or keep"},
		&cli.StringSliceFlag{Name: "topic-id", Usage: "TOPIC=ID: write this topic id into partition.metadata (topic re-created in the target cluster)"},
		&cli.StringSliceFlag{Name: "rename", Usage: "OLD=NEW: restore topic OLD under the name NEW"},
		&cli.IntFlag{Name: "node-id", Value: -1, Usage: "with --whole-broker: node.id to write into meta.properties (default: the archived one)"},
		&cli.BoolFlag{Name: "rolled-only", Usage: "restore only rolled (archived) segments, not the tail captures of the active segments"},
		&cli.BoolFlag{Name: "force", Usage: "replace existing non-empty partition dirs"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan (partitions, offset ranges, bytes, gaps, the exact cut, existing partition dirs) and write nothing"},
		&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "parallel downloads"},
		&cli.BoolFlag{Name: "json", Usage: "print the plan or report as JSON"},
	}, storeFlags()...)
	return &cli.Command{
		Name:  "restore",
		Usage: "rebuild partition directories from the archive",
		Description: `Plans a contiguous chain of archived segments per partition, verifies every object (size,
SHA-256, CRC) while downloading, builds each partition in a temp dir inside the target, fsyncs
it and renames it into place. .log files are byte-identical to the originals; indexes are
restored or rebuilt as Kafka's recovery would; leader-epoch-checkpoint and partition.metadata
are written consistent with the restored range. No clean-shutdown marker is written, so the
broker re-validates what it loads. After the last archived segment of each partition, the
agent's tail captures of the active segment (the chain ending in the newest capture) become the
restored active segment, byte-identical to what the broker held when it was captured; a
partition that never rolled comes back from its captures alone; --rolled-only leaves them out.
An existing non-empty partition dir is never touched
without --force; an interrupted restore resumes where it stopped.

Refused whatever the flags (exit 1): a target whose .lock a running process (a broker) holds.
Refused unless told: a target whose meta.properties names another cluster (--into-other-cluster);
a whole-broker rebuild without archived __cluster_metadata (--allow-no-metadata). A manifest that
does not decode or verify is reported by key and left out (other replicas' copies fill in); the
rest is restored and the exit code is 1. --broker N for a broker the archive does not hold is a
usage error (exit 2) listing the brokers it holds.

Examples:
  segvault restore --bucket file:///backup/segvault --target /var/lib/kafka/data
  segvault restore --bucket s3://kafka-archive --broker 3 --whole-broker -t /data1 -t /data2
  segvault restore --bucket s3://kafka-archive --topic '^orders$' --to-time 2026-11-20T09:00:00Z \
      --topic-id orders=Q2zXW7oBTcOxqgTQdD4t5g -t /var/lib/kafka/data --dry-run`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runRestore,
	}
}

func parsePairs(flag string, vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || val == "" {
			return nil, usageErr("--%s %q: want KEY=VALUE", flag, v)
		}
		out[k] = val
	}
	return out, nil
}

// minTimeMs is 2000-01-01T00:00:00Z in Unix milliseconds: a smaller
// --to-time is almost certainly Unix seconds.
const minTimeMs = 946684800000

func parseTime(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return 0, usageErr("--to-time %d: negative", ms)
		}
		if ms < minTimeMs {
			return 0, usageErr("--to-time %d is %s as Unix milliseconds, before 2000: it looks like seconds; multiply by 1000 (--to-time %d000) or give RFC 3339",
				ms, time.UnixMilli(ms).UTC().Format(time.RFC3339), ms)
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, usageErr("--to-time %q: want RFC 3339 (2026-11-20T09:00:00Z) or Unix milliseconds", s)
	}
	return t.UnixMilli(), nil
}

func runRestore(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sel := restore.Selection{Cluster: c.String("cluster"), Broker: int32(c.Int("broker")), TopicID: c.String("from-topic-id"),
		Metadata: c.Bool("whole-broker"), RolledOnly: c.Bool("rolled-only")}
	if t := c.String("topic"); t != "" {
		re, err := regexp.Compile(t)
		if err != nil {
			return usageErr("--topic: %v", err)
		}
		sel.Topics = re
	}
	for _, p := range c.IntSlice("partition") {
		sel.Partitions = append(sel.Partitions, int32(p))
	}
	if sel.Metadata && sel.Broker < 0 {
		return usageErr("--whole-broker needs --broker")
	}
	toTime, err := parseTime(c.String("to-time"))
	if err != nil {
		return err
	}
	if c.IsSet("to-offset") && c.Int64("to-offset") < 0 {
		return usageErr("--to-offset %d: negative (omit it to restore everything)", c.Int64("to-offset"))
	}
	if c.Bool("allow-no-metadata") && !sel.Metadata {
		return usageErr("--allow-no-metadata needs --whole-broker")
	}
	sel.GapMarkers, sel.LeaveOutBad = true, true
	ids, err := parsePairs("topic-id", c.StringSlice("topic-id"))
	if err != nil {
		return err
	}
	for t, id := range ids {
		if err := index.ValidateTopicID(id); err != nil {
			return usageErr("--topic-id %s: %v", t, err)
		}
	}
	rename, err := parsePairs("rename", c.StringSlice("rename"))
	if err != nil {
		return err
	}
	policy := restore.OpenTxnPolicy(c.String("open-txns"))
	if policy != restore.AbortOpen && policy != restore.TruncateOpen && policy != restore.KeepOpen {
		return usageErr("--open-txns %q: want abort, truncate or keep", policy)
	}
	b, layout, err := openExistingStore(ctx, c)
	if err != nil {
		return err
	}
	dopts, err := decodeOptions(c)
	if err != nil {
		return err
	}
	src := restore.NewSource(b, dopts)
	plan, err := restore.MakePlan(ctx, src, layout, sel, c.Int("concurrency"))
	var nb *restore.NoBrokerError
	if errors.As(err, &nb) {
		return &exitError{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	// Bad manifests are reported by key and left out; the rest goes on.
	for _, bo := range plan.Bad {
		fmt.Fprintf(c.App.ErrWriter, "segvault: left out %s: %s\n", bo.Key, bo.Err)
	}
	if len(plan.Partitions) == 0 && len(plan.LogDirs) == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("nothing in %s matches the selection", b)}
	}
	if miss := plan.MissingMetadata(); miss != "" && !c.Bool("allow-no-metadata") {
		return &exitError{code: exitFailure, err: fmt.Errorf("refusing a whole-broker rebuild: the archive holds %s; "+
			"Kafka would format a new, empty metadata log under the old cluster id (restore the metadata from another broker, or pass --allow-no-metadata)", miss)}
	}
	opts := restore.Options{Targets: c.StringSlice("target"), Force: c.Bool("force"), IntoOtherCluster: c.Bool("into-other-cluster"),
		Concurrency: c.Int("concurrency"), ToOffset: c.Int64("to-offset"), ToTime: toTime, OpenTxns: policy, TopicIDs: ids, Rename: rename,
		NodeID: int32(c.Int("node-id")), Log: log, Progress: newProgress(c.App.ErrWriter)}
	badErr := func() error {
		if len(plan.Bad) == 0 {
			return nil
		}
		keys := make([]string, len(plan.Bad))
		for i, bo := range plan.Bad {
			keys[i] = bo.Key
		}
		return &exitError{code: exitFailure, err: fmt.Errorf("%d archive objects did not decode or verify and were left out: %s", len(keys), strings.Join(keys, ", "))}
	}
	existing, err := restore.Check(plan, opts)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if c.Bool("dry-run") {
		cuts := map[*restore.PartitionPlan]restore.CutPreview{}
		if opts.ToOffset >= 0 || opts.ToTime >= 0 {
			for _, p := range plan.Partitions {
				p.DropTail() // Run leaves the unarchived tail out of a cut
				cp, err := restore.PreviewCut(ctx, src, p, opts.ToOffset, opts.ToTime)
				if err != nil {
					return fmt.Errorf("cut %s-%d: %w", p.Topic, p.Partition, err)
				}
				cuts[p] = cp
			}
		}
		if err := printPlan(c.App.Writer, plan, c.Bool("json"), cuts, existing); err != nil {
			return err
		}
		return badErr()
	}
	rep, err := restore.Run(ctx, src, plan, opts)
	var refused *restore.RefusedError
	if errors.As(err, &refused) {
		return &exitError{code: exitFailure, err: err}
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jsonReport(rep, plan)); err != nil {
			return err
		}
		return badErr()
	}
	w := c.App.Writer
	written := fmt.Sprintf("%d bytes written (%d of record data)", rep.Bytes, rep.LogBytes)
	if rep.LogBytes == 0 {
		written = fmt.Sprintf("%d bytes written, no record data", rep.Bytes)
	}
	fmt.Fprintf(w, "restored %d partitions (%d already in place), %d segments, %d files (%d resumed): %d bytes fetched and verified, %s in %s (%.1f MiB/s)\n",
		rep.Partitions, rep.Skipped, rep.Segments, rep.Files, rep.Resumed, rep.Fetched, written, rep.Duration.Round(time.Millisecond),
		float64(rep.Bytes)/(1<<20)/max(rep.Duration.Seconds(), 1e-3))
	if rep.Empty > 0 {
		fmt.Fprintf(w, "%d partitions with no archived segment restored empty at their last known log end\n", rep.Empty)
	}
	if rep.Rebuilt > 0 || rep.AbortMarkers > 0 {
		fmt.Fprintf(w, "rebuilt %d index files; wrote %d ABORT markers for transactions open at the end\n", rep.Rebuilt, rep.AbortMarkers)
	}
	cutKeys := make([]string, 0, len(rep.Cut))
	for p := range rep.Cut {
		cutKeys = append(cutKeys, p)
	}
	sort.Strings(cutKeys)
	for _, p := range cutKeys {
		fmt.Fprintf(w, "  %s: cut after offset %d\n", p, rep.Cut[p])
	}
	for _, g := range rep.Gaps {
		fmt.Fprintf(w, "  GAP %s\n", g)
	}
	return badErr()
}

// restoreJSON is `restore --json`: snake_case, durations in seconds, RFC
// 3339 times, like `ls --json`.
type restoreJSON struct {
	Cluster         string              `json:"cluster"`
	Partitions      int                 `json:"partitions"`
	Skipped         int                 `json:"already_in_place"`
	Empty           int                 `json:"restored_empty"`
	Segments        int                 `json:"segments"`
	Files           int                 `json:"files"`
	Resumed         int                 `json:"resumed_files"`
	Fetched         int64               `json:"fetched_bytes"`
	Bytes           int64               `json:"bytes"`
	LogBytes        int64               `json:"log_bytes"`
	Rebuilt         int                 `json:"rebuilt_index_files"`
	AbortMarkers    int                 `json:"abort_markers"`
	Cut             map[string]int64    `json:"cut_after_offset,omitempty"`
	Gaps            []string            `json:"gaps"`
	Bad             []restore.BadObject `json:"left_out,omitempty"`
	Started         string              `json:"started_at"`
	Finished        string              `json:"finished_at"`
	DurationSeconds float64             `json:"duration_seconds"`
}

func jsonReport(rep *restore.Report, plan *restore.Plan) restoreJSON {
	out := restoreJSON{Cluster: plan.Cluster, Partitions: rep.Partitions, Skipped: rep.Skipped, Empty: rep.Empty, Segments: rep.Segments,
		Files: rep.Files, Resumed: rep.Resumed, Fetched: rep.Fetched, Bytes: rep.Bytes, LogBytes: rep.LogBytes, Rebuilt: rep.Rebuilt, AbortMarkers: rep.AbortMarkers,
		Gaps: rep.Gaps, Bad: plan.Bad, Started: rep.Started.UTC().Format(time.RFC3339Nano), Finished: rep.Finished.UTC().Format(time.RFC3339Nano),
		DurationSeconds: rep.Duration.Seconds()}
	if len(rep.Cut) > 0 {
		out.Cut = rep.Cut
	}
	if out.Gaps == nil {
		out.Gaps = []string{}
	}
	return out
}

func newProgress(w io.Writer) *restore.Progress {
	term := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			term = true
		}
	}
	return &restore.Progress{Out: w, Terminal: term}
}

func printPlan(w io.Writer, plan *restore.Plan, asJSON bool, cuts map[*restore.PartitionPlan]restore.CutPreview, existing []restore.Existing) error {
	if asJSON {
		type seg struct {
			Base   int64  `json:"base_offset"`
			Last   int64  `json:"last_offset"`
			Next   int64  `json:"next_segment_base"`
			Broker int32  `json:"broker_id"`
			Bytes  int64  `json:"bytes"`
			Key    string `json:"key"`
		}
		type cut struct {
			Kept          bool   `json:"kept"`
			LastOffset    int64  `json:"last_offset"`
			LastTimestamp string `json:"last_time,omitempty"`
			Segments      int    `json:"segments"`
		}
		type part struct {
			Topic     string        `json:"topic"`
			Partition int32         `json:"partition"`
			TopicID   string        `json:"topic_id"`
			First     int64         `json:"first_offset"`
			Last      int64         `json:"last_offset"`
			EmptyAt   *int64        `json:"empty_at,omitempty"`
			Bytes     int64         `json:"bytes"`
			Segments  []seg         `json:"segments"`
			Gaps      []restore.Gap `json:"gaps,omitempty"`
			Cut       *cut          `json:"cut,omitempty"`
		}
		out := []part{}
		for _, p := range plan.Partitions {
			pp := part{Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, First: p.FirstOffset, Last: p.LastOffset, Bytes: p.Bytes, Gaps: p.Gaps,
				Segments: []seg{}}
			if p.EmptyAt >= 0 && len(p.Segments) == 0 {
				pp.EmptyAt = &p.EmptyAt
			}
			for _, s := range p.Segments {
				var n int64
				for _, f := range s.Manifest.Files {
					n += f.Size
				}
				pp.Segments = append(pp.Segments, seg{s.Manifest.BaseOffset, s.Manifest.Summary.LastOffset, s.Manifest.NextSegmentBase, s.Manifest.BrokerID, n, s.Key})
			}
			if cp, ok := cuts[p]; ok {
				pp.Cut = &cut{Kept: cp.Kept, LastOffset: cp.LastOffset, Segments: cp.Segments}
				if cp.LastTimestamp >= 0 {
					pp.Cut.LastTimestamp = time.UnixMilli(cp.LastTimestamp).UTC().Format(time.RFC3339Nano)
				}
			}
			out = append(out, pp)
		}
		if existing == nil {
			existing = []restore.Existing{}
		}
		leftOut := append([]restore.BadObject{}, plan.Bad...) // [] rather than null
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"cluster": plan.Cluster, "partitions": out, "existing_dirs": existing, "left_out": leftOut})
	}
	fmt.Fprintf(w, "cluster %s: %d partitions\n", plan.Cluster, len(plan.Partitions))
	fmt.Fprintf(w, "%-40s %-22s %10s %21s %21s %12s %s\n", "PARTITION", "TOPIC ID", "SEGMENTS", "FIRST OFFSET", "LAST OFFSET", "BYTES", "BROKERS")
	var total int64
	for _, p := range plan.Partitions {
		total += p.Bytes
		fmt.Fprintf(w, "%-40s %-22s %10d %21d %21d %12d %v\n", fmt.Sprintf("%s-%d", p.Topic, p.Partition), p.TopicID,
			len(p.Segments)+len(p.Snapshots), p.FirstOffset, p.LastOffset, p.Bytes, p.Brokers)
		if p.EmptyAt >= 0 && len(p.Segments) == 0 && p.Topic != "__cluster_metadata" {
			fmt.Fprintf(w, "    no archived segment: restored empty at its last known log end, offset %d\n", p.EmptyAt)
		}
		for _, g := range p.Gaps {
			fmt.Fprintf(w, "    GAP offsets %d..%d: %s\n", g.From, g.To-1, g.Reason)
		}
		if cp, ok := cuts[p]; ok {
			if !cp.Kept {
				fmt.Fprintf(w, "    %s-%d: cut keeps nothing (the first batch is past the point in time)\n", p.Topic, p.Partition)
			} else {
				fmt.Fprintf(w, "    %s-%d: cut after last offset %d, last timestamp %d (%s), %d segments\n", p.Topic, p.Partition, cp.LastOffset,
					cp.LastTimestamp, time.UnixMilli(cp.LastTimestamp).UTC().Format(time.RFC3339Nano), cp.Segments)
			}
		}
	}
	fmt.Fprintf(w, "total %d bytes\n", total)
	if len(existing) > 0 {
		fmt.Fprintf(w, "existing partition dirs in the targets:\n")
		for _, e := range existing {
			fmt.Fprintf(w, "  %s: %s\n", e.Dir, e.Action)
		}
	}
	return nil
}
