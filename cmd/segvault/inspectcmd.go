package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/internal/inspect"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print Kafka log, index, snapshot and checkpoint files in readable form, like kafka-dump-log.sh",
		ArgsUsage: "FILE...",
		Description: `Prints Kafka's files in a form close to kafka-dump-log.sh (DumpLogSegments), without a JVM
or a broker:

  .log, KRaft .checkpoint   one line per batch; with --records one "| offset: ..." line per
                            record under it (control records show their type, e.g.
                            "endTxnMarker: COMMIT coordinatorEpoch: 0"); with --print-data also
                            each record's key and payload (non-printable bytes escaped)
  .index                    offset: X position: Y
  .timeindex                timestamp: T offset: X
  .txnindex                 version: V producerId: P firstOffset: F lastOffset: L lastStableOffset: S
  .snapshot                 one line per producer (producer state snapshot)
  leader-epoch-checkpoint, partition.metadata, meta.properties,
  recovery-point-offset-checkpoint, log-start-offset-checkpoint,
  replication-offset-checkpoint, cleaner-offset-checkpoint
                            one line per entry

With --json every batch (with a "records" array under --records) or entry is one JSON object
per line, naming its file. Files are read, never changed; the indexes are not checked against
their .log here (segvault verify does that).

A corrupt file is printed up to its last valid batch or entry, then the error, naming the file
and byte position, goes to standard error and the exit status is 1. Exit status 2: a path that
is missing, unreadable, a directory or not a Kafka file.

Examples:
  segvault inspect /var/lib/kafka/data/orders-0/00000000000000000000.log
  segvault inspect --records --print-data /var/lib/kafka/data/orders-0/00000000000000000000.log
  segvault inspect /var/lib/kafka/data/orders-0/00000000000000000000.{index,timeindex,snapshot}
  segvault inspect --json --records /var/lib/kafka/data/orders-0/00000000000000000000.log | jq .`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "records", Aliases: []string{"deep-iteration"}, Usage: "also print every record of each batch (decompressing it)"},
			&cli.BoolFlag{Name: "print-data", Aliases: []string{"print-data-log"}, Usage: "also print each record's key, payload and headers (implies --records)"},
			&cli.BoolFlag{Name: "json", Usage: "JSON lines: one object per batch or entry"},
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	paths := c.Args().Slice()
	if len(paths) == 0 {
		return usageErr("inspect: give at least one file")
	}
	// Check every argument before printing anything: a typo is a usage
	// error, not a half-finished dump.
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("inspect: %w", err)}
		}
		if fi.IsDir() {
			return usageErr("inspect %s: is a directory: give files (segvault verify checks partition and log dirs)", p)
		}
		if !inspect.Knows(filepath.Base(p)) {
			return usageErr("inspect %s: not a Kafka file inspect knows: want .log, .index, .timeindex, .txnindex, .snapshot, "+
				"a KRaft .checkpoint, leader-epoch-checkpoint, partition.metadata, meta.properties or a log-dir offset checkpoint", p)
		}
	}
	in := inspect.NewPrinter(c.App.Writer, c.App.ErrWriter, inspect.Options{JSON: c.Bool("json"),
		Records: c.Bool("records") || c.Bool("print-data"), Data: c.Bool("print-data"), MaxReadSize: 1 << 30})
	corrupt, ioErr := false, false
	for _, p := range paths {
		err := in.File(p)
		if err == nil {
			continue
		}
		fmt.Fprintf(c.App.ErrWriter, "segvault: %v\n", err)
		if inspect.IsCorruption(err) {
			corrupt = true
		} else {
			ioErr = true
		}
	}
	switch {
	case corrupt:
		return &exitError{code: exitFailure}
	case ioErr:
		return &exitError{code: exitUsage}
	}
	return nil
}
