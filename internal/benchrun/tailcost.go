package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// Tail-capture cost (issue 15's cost figure): 2,000 partitions with light
// traffic (two real batches of two records per partition per round), the
// agent's tail-capture rounds (agent.MeasureTailCost, default settings)
// against MinIO, beside the PUTs a per-partition upload would make.
const (
	tailCostPartitions = 2000
	tailCostRounds     = 3
	tailCostBatches    = 2 // per partition and round
)

func (h *harness) benchTailCost(ctx context.Context) error {
	dir := filepath.Join(h.work, "tailcost")
	gen := filepath.Join(dir, "gen")
	if _, err := brokersim.Generate(ctx, brokersim.Config{Dir: gen, NodeID: 1, SegmentBytes: 1 << 20, Seed: 15,
		Topics: []brokersim.TopicSpec{{Name: "light", Codec: "none", Records: 4 * tailCostRounds * tailCostBatches, BatchRecords: 2}}}); err != nil {
		return fmt.Errorf("generate the light-traffic batches: %w", err)
	}
	srcPath := filepath.Join(gen, "light-0", "00000000000000000000.log")
	src, err := os.ReadFile(srcPath)
	if err != nil {
		return err
	}
	const bucket = "tailcost"
	if err := h.srv.MakeBucket(ctx, bucket); err != nil {
		return fmt.Errorf("make bucket %s: %w", bucket, err)
	}
	b, err := uploader.NewS3(uploader.S3Options{Endpoint: h.srv.Endpoint(), Bucket: bucket, DisableTLS: true, PathStyle: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey, Region: "us-east-1"})
	if err != nil {
		return err
	}
	c, err := agent.MeasureTailCost(ctx, agent.TailCostInput{Dir: filepath.Join(dir, "broker"), Bucket: b, Partitions: tailCostPartitions,
		Rounds: tailCostRounds, BatchesPerRound: tailCostBatches, Source: src, SourceName: srcPath})
	if err != nil {
		return err
	}
	ds := fmt.Sprintf("%d partitions, light traffic", c.Partitions)
	perPart := c.Produced / int64(c.Partitions*c.Rounds)
	h.rep.dataset(dataset{Name: ds, Description: fmt.Sprintf("%d partition dirs, each appending %d real batches (%d bytes) per %.0f s tail-interval round, %d rounds (brokersim batches)",
		c.Partitions, tailCostBatches, perPart, c.IntervalSec, c.Rounds), Files: c.Partitions, Bytes: c.Produced})
	h.rep.add(row{ID: "tail.puts", Group: "tail", Name: "Tail capture: PUTs per minute per broker (default tail-interval)", Dataset: ds,
		Value: c.PutsPerMinute(), Unit: "PUT/min", Baseline: "per-partition upload (data object + manifest per partition and round)",
		BaselineValue: c.PerPartitionPutsPerMinute(), Better: "lower",
		Notes: fmt.Sprintf("%d tail PUTs in %d rounds (one pack and one manifest per round with new bytes) = %.0f PUTs/day; a per-partition upload: %d PUTs = %.0f/day. Mean round %.2f s.",
			c.Puts, c.Rounds, c.PutsPerMinute()*1440, c.PerPartitionPuts, c.PerPartitionPutsPerMinute()*1440, c.RoundSeconds),
		Extra: map[string]float64{"puts": float64(c.Puts), "per_partition_puts": float64(c.PerPartitionPuts), "round_s": c.RoundSeconds}})
	h.rep.add(row{ID: "tail.stored", Group: "tail", Name: "Tail capture: bytes stored (pack + manifest) per byte produced", Dataset: ds,
		Value: c.StoredPerProduced(), Unit: "x", Better: "lower",
		Notes: fmt.Sprintf("%d bytes produced; packs %d bytes (%.2f per byte produced, compression auto), manifests %d bytes (%.2f per byte produced).",
			c.Produced, c.PackBytes, float64(c.PackBytes)/float64(c.Produced), c.ManifestBytes, float64(c.ManifestBytes)/float64(c.Produced)),
		Extra: map[string]float64{"produced_bytes": float64(c.Produced), "pack_bytes": float64(c.PackBytes), "manifest_bytes": float64(c.ManifestBytes)}})
	return nil
}
