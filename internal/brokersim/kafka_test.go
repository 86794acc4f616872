package brokersim

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/segment"
)

// TestKafkaDumpLogSegments has Kafka's own DumpLogSegments check what the
// simulator writes: every batch and record valid, offsets consecutive
// (except in a compacted segment), offset and time indexes matching the
// log, rolled indexes passing the sanity check, and the .txnindex and
// .snapshot files readable. It needs java and the jars of `make kafka-jars`
// (skipped without them, except in CI).
func TestKafkaDumpLogSegments(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kafka's DumpLogSegments in a JVM")
	}
	ctx := context.Background()
	b, err := Start(ctx, Config{Dir: t.TempDir(), SegmentBytes: 32 << 10, Seed: 11, Topics: allTopics()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	kv := b.Result().Partition("compacted", 0)
	if len(kv.Segments) < 2 {
		t.Fatalf("compacted-0 segments %v", kv.Segments)
	}
	if err := b.Compact("compacted", 0, kv.Segments[0]); err != nil {
		t.Fatal(err)
	}
	res := b.Result()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var logs, compactedLogs, sideFiles, indexes, rolledIndexes []string
	for _, tr := range res.Topics {
		for _, pr := range tr.Partitions {
			for i, base := range pr.Segments {
				p := func(k segment.FileKind) string { return filepath.Join(pr.Dir, segment.FormatName(base, k)) }
				if tr.Spec.Compacted {
					compactedLogs = append(compactedLogs, p(segment.KindLog))
				} else {
					logs = append(logs, p(segment.KindLog))
				}
				// DumpLogSegments reads the zero first slot of an active
				// index without entries as an entry (offset = base,
				// position 0) and reports a mismatch, for Kafka's files
				// too; leave those out.
				if i < len(pr.Segments)-1 || hasFirstEntry(t, p(segment.KindIndex)) {
					indexes = append(indexes, p(segment.KindIndex))
				}
				if i < len(pr.Segments)-1 || hasFirstEntry(t, p(segment.KindTimeIndex)) {
					indexes = append(indexes, p(segment.KindTimeIndex))
				}
				if i < len(pr.Segments)-1 {
					rolledIndexes = append(rolledIndexes, p(segment.KindIndex), p(segment.KindTimeIndex))
				}
			}
			for _, pat := range []string{"*.txnindex", "*.snapshot"} {
				m, _ := filepath.Glob(filepath.Join(pr.Dir, pat))
				sideFiles = append(sideFiles, m...)
			}
		}
	}
	if len(rolledIndexes) == 0 || !slices.ContainsFunc(sideFiles, func(s string) bool { return strings.HasSuffix(s, ".txnindex") }) {
		t.Fatal("want rolled segments and txn indexes to check")
	}
	for _, v := range kafkatest.Versions {
		t.Run(v, func(t *testing.T) {
			for _, p := range kafkatest.CheckSegments(t, v, append(slices.Clone(logs), sideFiles...)) {
				t.Error(p)
			}
			for _, p := range kafkatest.CheckSegments(t, v, compactedLogs, kafkatest.ProblemNonConsecutive) {
				t.Error(p)
			}
			for _, args := range [][]string{{"--verify-index-only"}, {"--index-sanity-check"}} {
				files := indexes
				if args[0] == "--index-sanity-check" {
					// A running broker's active indexes are preallocated:
					// their zero slots fail the sanity check, as Kafka's do.
					files = rolledIndexes
				}
				out, errOut, err := kafkatest.DumpLogSegmentsArgs(t, v, args, files...)
				if err != nil {
					t.Errorf("%v: %v", args, err)
				}
				for _, p := range kafkatest.DumpProblems(out, errOut) {
					t.Errorf("%v: %v", args, p)
				}
				// An index without entries prints "is empty." instead.
				if n := strings.Count(out, "passed sanity check") + strings.Count(out, " is empty."); args[0] == "--index-sanity-check" && n != len(files) {
					t.Errorf("%d of %d indexes passed the sanity check:\n%s", n, len(files), out)
				}
			}
		})
	}
}

func hasFirstEntry(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return false
	}
	return !allZero(b[:])
}
