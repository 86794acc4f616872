package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

func lsCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options)", EnvVars: env("config")},
		&cli.StringFlag{Name: "cluster", Usage: "only this cluster"},
		&cli.StringFlag{Name: "topic", Usage: "only topics matching this regular expression"},
		&cli.BoolFlag{Name: "json", Usage: "JSON output"},
		&cli.BoolFlag{Name: "wide", Usage: "table: also the CLUSTER (always shown when the archive holds several) and TOPIC ID columns"},
	}, storeFlags()...)
	return &cli.Command{
		Name:  "ls",
		Usage: "list what the archive holds: clusters, brokers, topics, partitions, offset and time ranges, gaps",
		Description: `Prints one line per archived partition: its topic id, the brokers whose copies are archived,
the segments (and KRaft snapshots), the offset and time range, raw and stored bytes, and GAPS ("-": none):
offset ranges missing from the archive ("100..199"), marked "(lost)" when the agent recorded
that Kafka deleted the segment before it could be archived (a gap marker), and lost segments
no missing range covers as "lost:FROM..TO". Partitions whose every segment was lost are listed
too. OFFSETS "empty at N": the archived segments hold no record, the next offset is N.
The table shows CLUSTER only when the archive holds several clusters and TOPIC ID only with
--wide. --json prints everything, with the gap markers in full ("lost_segments").

Examples:
  segvault ls --bucket s3://kafka-archive --s3-endpoint minio:9000 --s3-path-style
  segvault ls --bucket file:///backup/segvault --topic '^orders' --json`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runLs,
	}
}

// lsPartition is one partition in `ls` output.
type lsPartition struct {
	Cluster   string        `json:"cluster"`
	Topic     string        `json:"topic"`
	Partition int32         `json:"partition"`
	TopicID   string        `json:"topic_id"`
	Brokers   []int32       `json:"brokers"`
	Segments  int           `json:"segments"`
	First     int64         `json:"first_offset"`
	Last      int64         `json:"last_offset"`
	FirstTime string        `json:"first_time,omitempty"`
	LastTime  string        `json:"last_time,omitempty"`
	Bytes     int64         `json:"bytes"`
	Stored    int64         `json:"stored_bytes"`
	Gaps      []restore.Gap `json:"gaps,omitempty"`
	Lost      []lsLost      `json:"lost_segments,omitempty"`
	Older     int           `json:"other_incarnations,omitempty"`
}

// lsLost is a gap marker: a segment Kafka deleted before the agent could
// archive it.
type lsLost struct {
	Broker     int32     `json:"broker_id"`
	TopicID    string    `json:"topic_id"`
	BaseOffset int64     `json:"base_offset"`
	NextBase   int64     `json:"next_segment_base"`
	Bytes      int64     `json:"bytes"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
	Key        string    `json:"key"`
}

// gapMarkers reads every gap marker of a cluster, by partition
// ("topic/partition"). Markers that are unreadable or of an unknown format
// are reported on w and skipped.
func gapMarkers(ctx context.Context, b uploader.Bucket, layout uploader.Layout, cluster string, topics *regexp.Regexp, w io.Writer) (map[string][]lsLost, map[string]uploader.GapMarker, error) {
	prefix := layout.TopicsPrefix(cluster)
	var keys []string
	if err := b.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
		// <topic>/<partition>/<topic-id>/gaps/<base>-<broker>.json
		parts := strings.Split(strings.TrimPrefix(oi.Key, prefix), "/")
		if len(parts) == 5 && parts[3] == "gaps" && strings.HasSuffix(parts[4], ".json") {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	out := map[string][]lsLost{}
	first := map[string]uploader.GapMarker{}
	for _, key := range keys {
		parts := strings.Split(strings.TrimPrefix(key, prefix), "/")
		if topics != nil && !topics.MatchString(parts[0]) {
			continue
		}
		data, err := uploader.ReadAll(ctx, b, key, 1<<20)
		if err != nil {
			fmt.Fprintf(w, "segvault: gap marker %s: %v\n", key, err)
			continue
		}
		g, err := uploader.DecodeGapMarker(key, data)
		if err != nil {
			fmt.Fprintf(w, "segvault: %v\n", err)
			continue
		}
		if g.Topic != parts[0] || fmt.Sprint(g.Partition) != parts[1] {
			fmt.Fprintf(w, "segvault: gap marker %s: names %s-%d, not the partition of its key\n", key, g.Topic, g.Partition)
			continue
		}
		pk := g.Topic + "/" + parts[1]
		if _, ok := first[pk]; !ok {
			first[pk] = *g
		}
		out[pk] = append(out[pk], lsLost{Broker: g.BrokerID, TopicID: g.TopicID, BaseOffset: g.BaseOffset, NextBase: g.NextBase,
			Bytes: g.Bytes, Reason: g.Reason, At: g.At, Key: key})
	}
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool {
			return l[i].BaseOffset < l[j].BaseOffset || l[i].BaseOffset == l[j].BaseOffset && l[i].Broker < l[j].Broker
		})
	}
	return out, first, nil
}

func runLs(c *cli.Context) error {
	ctx := c.Context
	b, layout, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	sel := restore.Selection{Cluster: c.String("cluster"), Broker: -1, Metadata: true}
	clusters, err := restore.Clusters(ctx, restore.NewSource(b, uploader.DecodeOptions{}), layout)
	if err != nil {
		return err
	}
	out := []lsPartition{}
	for _, cl := range clusters {
		if sel.Cluster != "" && cl != sel.Cluster {
			continue
		}
		s := sel
		s.Cluster = cl
		if t := c.String("topic"); t != "" {
			if s.Topics, err = compileRegexp("topic", t); err != nil {
				return err
			}
		}
		plan, err := restore.MakePlan(ctx, restore.NewSource(b, uploader.DecodeOptions{}), layout, s, 8)
		if err != nil {
			return err
		}
		lost, lostMeta, err := gapMarkers(ctx, b, layout, cl, s.Topics, c.App.ErrWriter)
		if err != nil {
			return err
		}
		for _, p := range plan.Partitions {
			pk := fmt.Sprintf("%s/%d", p.Topic, p.Partition)
			lp := lsPartition{Cluster: cl, Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, Brokers: p.Brokers,
				Segments: len(p.Segments) + len(p.Snapshots), First: p.FirstOffset, Last: p.LastOffset, Bytes: p.Bytes, Gaps: p.Gaps,
				Lost: lost[pk], Older: p.Incarnation}
			delete(lost, pk)
			var ft, lt int64 = -1, -1
			for _, s := range p.Segments {
				sum := s.Manifest.Summary
				if sum.FirstTimestamp >= 0 && (ft < 0 || sum.FirstTimestamp < ft) {
					ft = sum.FirstTimestamp
				}
				if sum.MaxTimestamp > lt {
					lt = sum.MaxTimestamp
				}
				for _, f := range s.Manifest.Files {
					lp.Stored += f.Object.Size
				}
			}
			if ft >= 0 {
				lp.FirstTime = time.UnixMilli(ft).UTC().Format(time.RFC3339)
			}
			if lt >= 0 {
				lp.LastTime = time.UnixMilli(lt).UTC().Format(time.RFC3339)
			}
			out = append(out, lp)
		}
		for pk, l := range lost { // partitions whose every archived segment was lost
			g := lostMeta[pk]
			out = append(out, lsPartition{Cluster: cl, Topic: g.Topic, Partition: g.Partition, TopicID: g.TopicID, Brokers: []int32{},
				First: -1, Last: -1, Lost: l})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Cluster < b.Cluster || a.Cluster == b.Cluster && (a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition)
	})
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	wide, several := c.Bool("wide"), false
	for _, p := range out {
		several = several || p.Cluster != out[0].Cluster
	}
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	row := func(cluster, topicID string, cells ...string) {
		if wide || several {
			fmt.Fprint(tw, cluster, "\t")
		}
		fmt.Fprint(tw, cells[0], "\t")
		if wide {
			fmt.Fprint(tw, topicID, "\t")
		}
		fmt.Fprintln(tw, strings.Join(cells[1:], "\t"))
	}
	row("CLUSTER", "TOPIC ID", "PARTITION", "BROKERS", "SEGMENTS", "OFFSETS", "TIME RANGE", "BYTES", "STORED", "GAPS")
	for _, p := range out {
		gaps := gapsText(p)
		if gaps == "" {
			gaps = "-"
		}
		row(p.Cluster, p.TopicID, fmt.Sprintf("%s-%d", p.Topic, p.Partition), fmt.Sprint(p.Brokers), fmt.Sprint(p.Segments),
			lsOffsets(p), lsTimes(p), fmt.Sprint(p.Bytes), fmt.Sprint(p.Stored), gaps)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// gapsText renders a partition's GAPS column: the offset ranges missing from
// the archive, "(lost)" when a gap marker explains one, and the lost
// segments no such range covers (another replica's copy filled them, or they
// lie outside the archived range) as "lost:FROM..TO".
func gapsText(p lsPartition) string {
	var out []string
	used := make([]bool, len(p.Lost))
	for _, g := range p.Gaps {
		s := fmt.Sprintf("%d..%d", g.From, g.To-1)
		for i, l := range p.Lost {
			if l.BaseOffset < g.To && (l.NextBase > g.From || l.NextBase <= l.BaseOffset && l.BaseOffset >= g.From) {
				used[i] = true
				if !strings.HasSuffix(s, "(lost)") {
					s += "(lost)"
				}
			}
		}
		out = append(out, s)
	}
	for i, l := range p.Lost {
		if used[i] {
			continue
		}
		if l.NextBase > l.BaseOffset {
			out = append(out, fmt.Sprintf("lost:%d..%d", l.BaseOffset, l.NextBase-1))
		} else {
			out = append(out, fmt.Sprintf("lost:%d..?", l.BaseOffset))
		}
	}
	return strings.Join(out, ",")
}

// lsOffsets renders the OFFSETS column: "-" when nothing is archived, and
// "empty at N" for archived segments that hold no record (Kafka's empty
// segment at N, as left after retention: first N, last N-1).
func lsOffsets(p lsPartition) string {
	switch {
	case p.Segments == 0:
		return "-"
	case p.Last < p.First:
		return fmt.Sprintf("empty at %d", p.First)
	}
	return fmt.Sprintf("%d..%d", p.First, p.Last)
}

// lsTimes renders the TIME RANGE column, the second time without its date
// when both fall on the same day.
func lsTimes(p lsPartition) string {
	if p.Segments == 0 || p.FirstTime == "" && p.LastTime == "" {
		return "-"
	}
	last := p.LastTime
	if d, rest, ok := strings.Cut(p.LastTime, "T"); ok && strings.HasPrefix(p.FirstTime, d+"T") {
		last = rest
	}
	return p.FirstTime + ".." + last
}
