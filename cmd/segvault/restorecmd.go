package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
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
		&cli.BoolFlag{Name: "whole-broker", Usage: "with --broker: also the KRaft metadata log and meta.properties (bare-metal rebuild)"},
		&cli.Int64Flag{Name: "to-offset", Value: -1, Usage: "point in time: keep records up to and including this offset (cut at a batch boundary)"},
		&cli.StringFlag{Name: "to-time", Usage: "point in time: keep batches whose max timestamp is at or before this time (RFC 3339 or Unix milliseconds)"},
		&cli.StringFlag{Name: "open-txns", Value: "abort", Usage: "transactions still open at the end: abort (write ABORT markers, as the coordinator would), truncate (cut before them) or keep"},
		&cli.StringSliceFlag{Name: "topic-id", Usage: "TOPIC=ID: write this topic id into partition.metadata (topic re-created in the target cluster)"},
		&cli.StringSliceFlag{Name: "rename", Usage: "OLD=NEW: restore topic OLD under the name NEW"},
		&cli.IntFlag{Name: "node-id", Value: -1, Usage: "with --whole-broker: node.id to write into meta.properties (default: the archived one)"},
		&cli.BoolFlag{Name: "force", Usage: "replace existing non-empty partition dirs"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan (partitions, offset ranges, bytes, gaps) and write nothing"},
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
broker re-validates what it loads. An existing non-empty partition dir is never touched
without --force; an interrupted restore resumes where it stopped.

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

func parseTime(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
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
		Metadata: c.Bool("whole-broker")}
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
	b, layout, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	dopts, err := decodeOptions(c)
	if err != nil {
		return err
	}
	src := restore.NewSource(b, dopts)
	plan, err := restore.MakePlan(ctx, src, layout, sel, c.Int("concurrency"))
	if err != nil {
		return err
	}
	if len(plan.Partitions) == 0 && len(plan.LogDirs) == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("nothing in %s matches the selection", b)}
	}
	if c.Bool("dry-run") {
		return printPlan(c.App.Writer, plan, c.Bool("json"))
	}
	opts := restore.Options{Targets: c.StringSlice("target"), Force: c.Bool("force"), Concurrency: c.Int("concurrency"),
		ToOffset: c.Int64("to-offset"), ToTime: toTime, OpenTxns: policy, TopicIDs: ids, Rename: rename,
		NodeID: int32(c.Int("node-id")), Log: log, Progress: newProgress(c.App.ErrWriter)}
	rep, err := restore.Run(ctx, src, plan, opts)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "restored %d partitions (%d already in place), %d segments, %d files (%d resumed), %d bytes verified and written in %s (%.1f MiB/s)\n",
		rep.Partitions, rep.Skipped, rep.Segments, rep.Files, rep.Resumed, rep.Bytes, rep.Duration.Round(time.Millisecond),
		float64(rep.Bytes)/(1<<20)/max(rep.Duration.Seconds(), 1e-3))
	if rep.Rebuilt > 0 || rep.AbortMarkers > 0 {
		fmt.Fprintf(w, "rebuilt %d index files; wrote %d ABORT markers for transactions open at the end\n", rep.Rebuilt, rep.AbortMarkers)
	}
	for p, off := range rep.Cut {
		fmt.Fprintf(w, "  %s: cut after offset %d\n", p, off)
	}
	for _, g := range rep.Gaps {
		fmt.Fprintf(w, "  GAP %s\n", g)
	}
	return nil
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

func printPlan(w io.Writer, plan *restore.Plan, asJSON bool) error {
	if asJSON {
		type seg struct {
			Base, Last, Next int64
			Broker           int32
			Bytes            int64
			Key              string
		}
		type part struct {
			Topic     string
			Partition int32
			TopicID   string
			First     int64
			Last      int64
			Bytes     int64
			Segments  []seg
			Gaps      []restore.Gap
		}
		var out []part
		for _, p := range plan.Partitions {
			pp := part{Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, First: p.FirstOffset, Last: p.LastOffset, Bytes: p.Bytes, Gaps: p.Gaps}
			for _, s := range p.Segments {
				var n int64
				for _, f := range s.Manifest.Files {
					n += f.Size
				}
				pp.Segments = append(pp.Segments, seg{s.Manifest.BaseOffset, s.Manifest.Summary.LastOffset, s.Manifest.NextSegmentBase, s.Manifest.BrokerID, n, s.Key})
			}
			out = append(out, pp)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"cluster": plan.Cluster, "partitions": out})
	}
	fmt.Fprintf(w, "cluster %s: %d partitions\n", plan.Cluster, len(plan.Partitions))
	fmt.Fprintf(w, "%-40s %-22s %10s %21s %21s %12s %s\n", "PARTITION", "TOPIC ID", "SEGMENTS", "FIRST OFFSET", "LAST OFFSET", "BYTES", "BROKERS")
	var total int64
	for _, p := range plan.Partitions {
		total += p.Bytes
		fmt.Fprintf(w, "%-40s %-22s %10d %21d %21d %12d %v\n", fmt.Sprintf("%s-%d", p.Topic, p.Partition), p.TopicID,
			len(p.Segments)+len(p.Snapshots), p.FirstOffset, p.LastOffset, p.Bytes, p.Brokers)
		for _, g := range p.Gaps {
			fmt.Fprintf(w, "    GAP offsets %d..%d: %s\n", g.From, g.To-1, g.Reason)
		}
	}
	fmt.Fprintf(w, "total %d bytes\n", total)
	return nil
}
