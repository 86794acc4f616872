package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/segment"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print the batches (and records) of Kafka log files, like kafka-dump-log.sh",
		ArgsUsage: "PATH...",
		Description: `Prints each batch of a .log or KRaft .checkpoint file in a form close to kafka-dump-log.sh,
without a JVM or a broker.

Examples:
  segvault inspect /var/lib/kafka/data/orders-0/00000000000000000000.log
  segvault inspect --json /var/lib/kafka/data/orders-0/00000000000000000000.log | jq .`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "JSON lines, one object per batch"},
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErr("inspect: give at least one file")
	}
	w := c.App.Writer
	bad := false
	for _, p := range c.Args().Slice() {
		n, ok := segment.ParseFileName(filepath.Base(p))
		if !ok || (n.Kind != segment.KindLog && n.Kind != segment.KindCheckpoint) {
			return usageErr("inspect %s: not a segment (.log) or KRaft snapshot (.checkpoint) file", p)
		}
		f, err := os.Open(p)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return &exitError{code: exitUsage, err: err}
		}
		base := n.BaseOffset
		if n.Kind == segment.KindCheckpoint {
			base = -1
		}
		if !c.Bool("json") {
			fmt.Fprintf(w, "Dumping %s\n", p)
		}
		r := segment.NewReader(f, fi.Size(), p, segment.ReaderOptions{BaseOffset: base})
		enc := json.NewEncoder(w)
		for r.Next() {
			b := r.Batch()
			if c.Bool("json") {
				enc.Encode(batchJSON(b))
				continue
			}
			lastSeq := int32(-1)
			if b.BaseSequence >= 0 {
				lastSeq = b.BaseSequence + b.LastOffsetDelta
			}
			tsType := "CreateTime"
			if b.LogAppendTime() {
				tsType = "LogAppendTime"
			}
			fmt.Fprintf(w, "baseOffset: %d lastOffset: %d count: %d baseSequence: %d lastSequence: %d producerId: %d producerEpoch: %d partitionLeaderEpoch: %d isTransactional: %t isControl: %t position: %d %s: %d size: %d magic: %d compresscodec: %s crc: %d isvalid: true\n",
				b.BaseOffset, b.LastOffset(), b.RecordCount, b.BaseSequence, lastSeq, b.ProducerID, b.ProducerEpoch, b.PartitionLeaderEpoch,
				b.Transactional(), b.Control(), b.Pos, tsType, b.MaxTimestamp, b.Size(), b.Magic, b.Codec(), b.CRC)
		}
		f.Close()
		if err := r.Err(); err != nil {
			bad = true
			fmt.Fprintf(c.App.ErrWriter, "%v\n", err)
		}
	}
	if bad {
		return &exitError{code: exitFailure}
	}
	return nil
}

func batchJSON(b *segment.Batch) map[string]any {
	return map[string]any{
		"base_offset": b.BaseOffset, "last_offset": b.LastOffset(), "count": b.RecordCount, "position": b.Pos, "size": b.Size(),
		"magic": b.Magic, "crc": b.CRC, "codec": b.Codec().String(), "partition_leader_epoch": b.PartitionLeaderEpoch,
		"producer_id": b.ProducerID, "producer_epoch": b.ProducerEpoch, "base_sequence": b.BaseSequence,
		"transactional": b.Transactional(), "control": b.Control(), "log_append_time": b.LogAppendTime(),
		"base_timestamp": b.BaseTimestamp, "max_timestamp": b.MaxTimestamp,
	}
}
