package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/segvault/segvault/archive"
)

// pruneFlags are prune's own options; they are also config-file keys (one
// file serves the agent and a prune timer: configcmd.go knows them).
func pruneFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "keep-within", Usage: "retention window (e.g. 7d, 36h): every restore to a point within it keeps working (required)", EnvVars: env("keep-within")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "delete-delay", Value: "1h", Usage: "how long a pruned version's data stays after its manifest is deleted, so restores that read it can finish (0: none)", EnvVars: env("delete-delay")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "orphan-grace", Value: "24h", Usage: "age at which an uncommitted data object is an orphan, not an upload in flight", EnvVars: env("orphan-grace")}),
	}
}

func pruneCommand() *cli.Command {
	flags := append(append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store and prune options)", EnvVars: env("config")},
		&cli.StringFlag{Name: "cluster", Usage: "only this cluster"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print what would be deleted and the bytes freed; delete nothing"},
		&cli.BoolFlag{Name: "json", Usage: "JSON report"},
		&cli.IntFlag{Name: "concurrency", Value: 8, Usage: "requests in flight"},
	}, pruneFlags()...), storeFlags()...)
	return &cli.Command{
		Name:  "prune",
		Usage: "delete what no restore to a point within the retention window needs",
		Description: `Deletes exactly what no restore to a point within --keep-within needs, and nothing else:
segment versions superseded (a cleaner rewrite, a newer capture) before the window starts,
tail captures whose segments were archived before it, gap markers archived segments cover,
log-dir captures older than the one in force at the window start (the newest per log dir
always stays), and orphaned uploads older than --orphan-grace. The newest version of every
segment stays whatever its age (compacted topics: the only copy of live keys).

A deletion is first written as a deletion mark (<prefix>v2/<cluster>/deletion-marks/), then
the manifest is deleted, then, once the mark is older than --delete-delay, the data and the
mark. A prune that stops half way is finished by the next one; a second prune deletes
nothing. Objects under object lock are not attempted: the report says when they become
deletable. Run it with its own credentials (docs/OPERATIONS.md, "Prune and info").

Exit status: 0 done (locked objects and marks waiting for the delay included), 1 a deletion
failed or an object did not decode (it is kept), 2 usage, 130 interrupted.

Examples:
  segvault prune --bucket s3://kafka-archive --keep-within 7d --dry-run
  segvault prune --config /etc/segvault/prune.yaml --json`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runPrune,
	}
}

// parseRetention parses a duration with an optional day suffix ("7d").
func parseRetention(flag, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 {
			return 0, usageErr("--%s %q: want a duration such as 7d, 36h or 90m", flag, s)
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usageErr("--%s %q: want a duration such as 7d, 36h or 90m", flag, s)
	}
	return d, nil
}

func runPrune(c *cli.Context) error {
	if c.String("keep-within") == "" {
		return usageErr("--keep-within is required (e.g. --keep-within 7d): prune has no default window")
	}
	keep, err := parseRetention("keep-within", c.String("keep-within"))
	if err != nil {
		return err
	}
	delay, err := parseRetention("delete-delay", c.String("delete-delay"))
	if err != nil {
		return err
	}
	grace, err := parseRetention("orphan-grace", c.String("orphan-grace"))
	if err != nil {
		return err
	}
	if delay == 0 {
		delay = -1 // none
	}
	if grace == 0 {
		grace = -1
	}
	if c.Int("concurrency") < 1 {
		return usageErr("--concurrency %d: want at least 1", c.Int("concurrency"))
	}
	b, layout, err := openExistingStore(c.Context, c)
	if err != nil {
		return err
	}
	rep, err := archive.Prune(c.Context, b, layout, c.String("cluster"), archive.PruneOptions{
		KeepWithin: keep, DeleteDelay: delay, OrphanGrace: grace, DryRun: c.Bool("dry-run"), Concurrency: c.Int("concurrency")})
	if rep != nil {
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			printPrune(c, rep)
		}
	}
	if err != nil {
		return err
	}
	for _, k := range rep.Undecodable {
		fmt.Fprintf(c.App.ErrWriter, "segvault: %s does not decode or is not the object its key names: kept, with every object it may name\n", k)
	}
	for _, f := range rep.Failures {
		fmt.Fprintln(c.App.ErrWriter, "segvault:", f)
	}
	if len(rep.Failures) > 0 || len(rep.Undecodable) > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func printPrune(c *cli.Context, rep *archive.PruneReport) {
	w := c.App.Writer
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "window starts %s\n", rep.WindowStart.UTC().Format(time.RFC3339))
	var unitBytes int64
	for _, u := range rep.Units {
		unitBytes += u.Bytes
		fmt.Fprintf(w, "%s %s %s (%d objects, %s): %s\n", verb, u.Kind, u.Keys[0], len(u.Keys), humanBytes(u.Bytes), u.Reason)
	}
	for _, p := range rep.Pending {
		fmt.Fprintf(w, "pending %s %s: %d objects, %s, deletable from %s\n", p.Kind, p.Key, p.Objects, humanBytes(p.Bytes), p.DeletableAt.UTC().Format(time.RFC3339))
	}
	for _, l := range rep.Locked {
		when := "when its legal hold is released"
		if !l.LegalHold {
			when = "from " + l.DeletableAt.UTC().Format(time.RFC3339)
		} else if !l.DeletableAt.IsZero() {
			when += " and from " + l.DeletableAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "locked %s %s (object lock on %s): not attempted, deletable %s\n", l.Unit.Kind, l.Unit.Keys[0], l.Key, when)
	}
	for _, k := range rep.Cancelled {
		fmt.Fprintf(w, "cancelled %s: the upload it named was committed\n", k)
	}
	fmt.Fprintf(w, "%s %d objects, %s freed now; %d deletions decided (%s), %d pending, %d locked; %d segment versions kept; took %s\n",
		verb, len(rep.Deleted), humanBytes(rep.BytesFreed), len(rep.Units), humanBytes(unitBytes), len(rep.Pending), len(rep.Locked), rep.KeptVersions, rep.Duration.D().Round(time.Millisecond))
}

// humanBytes is n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
