package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/archive"
)

func infoCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options)", EnvVars: env("config")},
		&cli.StringFlag{Name: "cluster", Usage: "only this cluster"},
		&cli.BoolFlag{Name: "json", Usage: "JSON output (per partition too)"},
		&cli.IntFlag{Name: "concurrency", Value: 8, Usage: "requests in flight"},
	}, storeFlags()...)
	return &cli.Command{
		Name:  "info",
		Usage: "per cluster, broker and topic: restore window, newest restorable offset, size, gaps, RPO now",
		Description: `Prints, per cluster, broker and topic: the restore window (the first and the newest record
time a restore can return), the newest restorable offset, the archive size raw (the files as
they were on disk) and stored (objects in the bucket), the gaps (offset ranges no archived
segment holds), and the RPO now: the age of the newest archived data (per partition; per
broker the largest over its partitions). An idle partition's RPO grows although nothing is
at risk: compare it with the partition's traffic. --json adds every partition.

Exit status: 0, 1 when a manifest, tail manifest or gap marker does not decode (named on standard
error), 2 usage.

Examples:
  segvault info --bucket s3://kafka-archive
  segvault info --config /etc/segvault/segvault.yaml --json`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runInfo,
	}
}

func runInfo(c *cli.Context) error {
	b, layout, err := openExistingStore(c.Context, c)
	if err != nil {
		return err
	}
	inv, err := archive.ListPruneInventory(c.Context, b, layout, c.String("cluster"), max(c.Int("concurrency"), 1))
	if err != nil {
		return err
	}
	info := archive.Info(inv, time.Now().UTC())
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(info); err != nil {
			return err
		}
	} else {
		printInfo(c, info)
	}
	bad := 0
	for _, v := range inv.Versions {
		if v.M == nil {
			bad++
			fmt.Fprintf(c.App.ErrWriter, "segvault: %s\n", v.Err)
		}
	}
	for _, g := range inv.Gaps {
		if g.G == nil {
			bad++
			fmt.Fprintf(c.App.ErrWriter, "segvault: %s (left out)\n", g.Err)
		}
	}
	for _, tl := range inv.Tails {
		if tl.T == nil {
			bad++
			fmt.Fprintf(c.App.ErrWriter, "segvault: %s (left out)\n", tl.Err)
		}
	}
	if bad > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtAge(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

func printInfo(c *cli.Context, info *archive.ArchiveInfo) {
	w := c.App.Writer
	if len(info.Clusters) == 0 {
		fmt.Fprintln(w, "the archive holds no segment")
	}
	for _, cl := range info.Clusters {
		fmt.Fprintf(w, "cluster %s: restore window %s .. %s, newest offset %d, %s raw, %s stored, %d gaps\n",
			cl.Cluster, fmtTime(cl.Earliest), fmtTime(cl.Latest), cl.NewestOffset, humanBytes(cl.RawBytes), humanBytes(cl.StoredBytes), cl.Gaps)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  BROKER\tPARTITIONS\tRAW\tSTORED\tNEWEST ARCHIVED\tRPO NOW\tWORST")
		for _, b := range cl.Brokers {
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\n", b.Broker, b.Partitions, humanBytes(b.RawBytes), humanBytes(b.StoredBytes), fmtTime(b.NewestAt), fmtAge(b.RPO.D()), b.RPOWorst)
		}
		tw.Flush()
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TOPIC\tPARTITIONS\tEARLIEST\tLATEST\tNEWEST OFFSET\tRAW\tSTORED\tGAPS\tRPO NOW")
		for _, t := range cl.Topics {
			var gaps []string
			for _, p := range t.Partitions {
				for _, g := range p.Gaps {
					gaps = append(gaps, fmt.Sprintf("%d:%d..%d", p.Partition, g.From, g.To-1))
				}
			}
			gs := "-"
			if len(gaps) > 0 {
				gs = strings.Join(gaps, ",")
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", t.Topic, len(t.Partitions), fmtTime(t.Earliest), fmtTime(t.Latest), t.NewestOffset,
				humanBytes(t.RawBytes), humanBytes(t.StoredBytes), gs, fmtAge(t.RPO.D()))
		}
		tw.Flush()
	}
}
