package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

func lsCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options)", EnvVars: env("config")},
		&cli.StringFlag{Name: "cluster", Usage: "only this cluster"},
		&cli.StringFlag{Name: "topic", Usage: "only topics matching this regular expression"},
		&cli.BoolFlag{Name: "json", Usage: "JSON output"},
	}, storeFlags()...)
	return &cli.Command{
		Name:  "ls",
		Usage: "list what the archive holds: clusters, brokers, topics, partitions, offset and time ranges, gaps",
		Description: `Example:
  segvault ls --bucket s3://kafka-archive --s3-endpoint minio:9000 --s3-path-style
  segvault ls --bucket file:///backup/segvault --topic '^orders' --json`,
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc("config")),
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
	Older     int           `json:"other_incarnations,omitempty"`
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
	var out []lsPartition
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
		for _, p := range plan.Partitions {
			lp := lsPartition{Cluster: cl, Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, Brokers: p.Brokers,
				Segments: len(p.Segments) + len(p.Snapshots), First: p.FirstOffset, Last: p.LastOffset, Bytes: p.Bytes, Gaps: p.Gaps, Older: p.Incarnation}
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
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tPARTITION\tTOPIC ID\tBROKERS\tSEGMENTS\tOFFSETS\tTIME RANGE\tBYTES\tSTORED\tGAPS")
	for _, p := range out {
		var gaps []string
		for _, g := range p.Gaps {
			gaps = append(gaps, fmt.Sprintf("%d..%d", g.From, g.To-1))
		}
		fmt.Fprintf(tw, "%s\t%s-%d\t%s\t%v\t%d\t%d..%d\t%s..%s\t%d\t%d\t%s\n", p.Cluster, p.Topic, p.Partition, p.TopicID, p.Brokers,
			p.Segments, p.First, p.Last, p.FirstTime, p.LastTime, p.Bytes, p.Stored, strings.Join(gaps, ","))
	}
	return tw.Flush()
}
