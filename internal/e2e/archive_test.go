package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
)

const fixturesRoot = "../../../shared/fixtures/kafka-real"

// fixtureLogDirs finds every broker log dir (a dir holding meta.properties)
// among the real fixtures.
func fixtureLogDirs(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(fixturesRoot, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == index.MetaPropertiesFile {
			out = append(out, filepath.Dir(p))
		}
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("no fixture log dirs under %s: %v", fixturesRoot, err)
	}
	sort.Strings(out)
	return out
}

// TestFixturesRoundTripS3 archives every partition of every real
// broker-written fixture log dir (a stopped broker: its active segments
// too) to MinIO, restores each whole broker into an empty dir and checks
// that every archived file, the partition files and the log-dir files come
// back byte-identical, and that what restore regenerated is valid.
func TestFixturesRoundTripS3(t *testing.T) {
	srv := miniotest.Start(t)
	for _, dir := range fixtureLogDirs(t) {
		name := strings.ReplaceAll(strings.TrimPrefix(dir, fixturesRoot+"/"), "/", "_")
		t.Run(name, func(t *testing.T) {
			src := copyTree(t, dir)
			b := s3Bucket(t, srv)
			cfg := agent.Config{LogDirs: []string{src}, IncludeActive: true}
			data, _ := os.ReadFile(filepath.Join(src, index.MetaPropertiesFile))
			meta, err := index.ParseMetaProperties("meta.properties", data)
			if err != nil {
				t.Fatal(err)
			}
			if meta.ClusterID == "" {
				cfg.ClusterID = "fixture-cluster" // ZooKeeper-era brokers may have none
			}
			a := newAgent(t, b, cfg, nil)
			rep, err := a.RunOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Corrupt+rep.Failed+rep.Lost > 0 || (rep.Archived == 0) != (rep.Partitions == 0) {
				t.Fatalf("archive: %+v", rep)
			}
			nObjects := countObjects(t, b)

			// Idempotent: a second agent (fresh state) uploads nothing.
			a2 := newAgent(t, b, cfg, nil)
			rep2, err := a2.RunOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep2.Archived != 0 || countObjects(t, b) != nObjects {
				t.Fatalf("second run archived %d segments, objects %d -> %d", rep2.Archived, nObjects, countObjects(t, b))
			}

			dst := filepath.Join(t.TempDir(), "restored")
			restoreAll(t, b, restore.Selection{Broker: meta.NodeID, Metadata: true}, restore.Options{Targets: []string{dst}})
			if n := compareArchived(t, b, src, dst); n == 0 && rep.Partitions > 0 {
				t.Fatal("nothing compared")
			}
			compareTree(t, src, dst)
		})
	}
}

// compareTree checks the restored log dir against the source: every Kafka
// file of every archived partition is identical, except what restore
// deliberately leaves out (the recovery-point checkpoint and the
// clean-shutdown marker, so Kafka re-validates everything) or regenerates
// where the source had none (indexes, which must then verify clean).
func compareTree(t *testing.T, src, dst string) {
	t.Helper()
	skip := map[string]bool{index.RecoveryPointFile: true, index.CleanShutdownFile: true, ".lock": true}
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if skip[fi.Name()] || filepath.Dir(rel) != "." && !hasLog(filepath.Dir(p)) {
			return nil
		}
		if n, ok := segment.ParseFileName(fi.Name()); ok && (n.Suffix != "" || n.Kind == segment.KindSnapshot && !kafkaKeepsSnapshot(filepath.Dir(p), n.BaseOffset)) {
			return nil
		}
		if filepath.Dir(rel) == "." && !isKnownRoot(fi.Name()) {
			return nil
		}
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil {
			t.Errorf("%s: not restored: %v", rel, err)
			return nil
		}
		if string(got) != string(want) {
			t.Errorf("%s: restored content differs (%d bytes vs %d)", rel, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Files only in the restored tree: regenerated indexes; they must verify.
	filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if _, err := os.Stat(filepath.Join(src, rel)); err == nil {
			return nil
		}
		n, ok := segment.ParseFileName(fi.Name())
		if !ok || (n.Kind != segment.KindIndex && n.Kind != segment.KindTimeIndex) {
			t.Errorf("%s: restored but not in the source", rel)
			return nil
		}
		logPath := filepath.Join(filepath.Dir(p), segment.FormatName(n.BaseOffset, segment.KindLog))
		f, err := os.Open(logPath)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		defer f.Close()
		lfi, _ := f.Stat()
		rb, err := index.Rebuild(f, lfi.Size(), logPath, index.RebuildOptions{BaseOffset: n.BaseOffset})
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		got, _ := os.ReadFile(p)
		want := rb.OffsetIndex
		if n.Kind == segment.KindTimeIndex {
			want = rb.TimeIndex
		}
		if string(got) != string(want) {
			t.Errorf("%s: regenerated index is not what Kafka's recovery writes", rel)
		}
		return nil
	})
}

// kafkaKeepsSnapshot applies ProducerStateManager.removeStraySnapshots: a
// producer snapshot survives a broker start only if a segment starts at its
// offset, or it is the newest one and above the last segment's base.
func kafkaKeepsSnapshot(dir string, off int64) bool {
	ents, _ := os.ReadDir(dir)
	var bases, snaps []int64
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Suffix == "" {
			switch n.Kind {
			case segment.KindLog:
				bases = append(bases, n.BaseOffset)
			case segment.KindSnapshot:
				snaps = append(snaps, n.BaseOffset)
			}
		}
	}
	for _, b := range bases {
		if b == off {
			return true
		}
	}
	return slices.Max(snaps) == off && off > slices.Max(bases)
}

func isKnownRoot(name string) bool {
	if name == index.MetaPropertiesFile {
		return true
	}
	for _, n := range index.RootCheckpointFiles {
		if n == name {
			return true
		}
	}
	return false
}

func hasLog(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	return len(m) > 0
}

// TestBrokersimRoundTripS3 archives the rolled segments of a simulated
// broker (every codec, idempotent, transactional with aborts, compacted) to
// MinIO, checks a second run creates no object, restores into an empty dir
// and compares every archived file byte for byte.
func TestBrokersimRoundTripS3(t *testing.T) {
	src := filepath.Join(t.TempDir(), "kafka-logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: src, NodeID: 3, SegmentBytes: 64 << 10, Seed: 7,
		Topics: []brokersim.TopicSpec{
			{Name: "plain", Partitions: 2, Codec: "none", Records: 3000},
			{Name: "gz", Codec: "gzip", Idempotent: true, Records: 3000},
			{Name: "snap", Codec: "snappy", Records: 3000, Headers: 2},
			{Name: "lz", Codec: "lz4", Idempotent: true, Records: 3000},
			{Name: "zs", Codec: "zstd", Idempotent: true, Records: 3000},
			{Name: "txn", Partitions: 2, Codec: "none", Transactional: true, AbortEvery: 3, Records: 3000},
			{Name: "compacted", Compacted: true, Idempotent: true, Records: 3000, TombstoneEvery: 7},
		}})
	if err != nil {
		t.Fatal(err)
	}
	rolled := 0
	for _, tp := range res.Topics {
		for _, p := range tp.Partitions {
			rolled += len(p.Segments) - 1
		}
	}
	b := s3Bucket(t, miniotest.Start(t))
	a := newAgent(t, b, agent.Config{LogDirs: []string{src}}, nil)
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archived != rolled || rep.Corrupt+rep.Failed+rep.Lost != 0 {
		t.Fatalf("archived %d of %d rolled segments: %+v", rep.Archived, rolled, rep)
	}
	before := countObjects(t, b)
	rep, err = newAgent(t, b, agent.Config{LogDirs: []string{src}}, nil).RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archived != 0 || countObjects(t, b) != before {
		t.Fatalf("second run: %+v, objects %d -> %d", rep, before, countObjects(t, b))
	}
	// The active segments were never read for upload.
	for _, m := range manifests(t, b) {
		p := res.Partition(m.Topic, m.Partition)
		if active := p.Segments[len(p.Segments)-1]; m.BaseOffset == active {
			t.Errorf("active segment %s-%d/%d archived", m.Topic, m.Partition, active)
		}
	}
	dst := filepath.Join(t.TempDir(), "restored")
	restoreAll(t, b, restore.Selection{Broker: -1}, restore.Options{Targets: []string{dst}})
	if n := compareArchived(t, b, src, dst); n < 3*rolled {
		t.Fatalf("compared only %d files for %d segments", n, rolled)
	}
}

// TestCorruptSegmentNotUploaded flips one byte in a rolled segment: the agent
// reports the file and the byte position, uploads no manifest for it, and
// archives the rest.
func TestCorruptSegmentNotUploaded(t *testing.T) {
	src := filepath.Join(t.TempDir(), "kafka-logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: src, NodeID: 1, SegmentBytes: 32 << 10, Seed: 3,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 2000}}})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Partition("t", 0)
	if len(p.Segments) < 3 {
		t.Fatalf("want 3+ segments, have %v", p.Segments)
	}
	victim := filepath.Join(p.Dir, segment.FormatName(p.Segments[1], segment.KindLog))
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	// A byte inside the second batch's records, covered by its CRC.
	r := segment.NewReader(strings.NewReader(string(data)), int64(len(data)), victim, segment.ReaderOptions{BaseOffset: p.Segments[1]})
	r.Next()
	r.Next()
	batchPos := r.Batch().Pos
	flip := batchPos + segment.V2HeaderSize + 5
	data[flip] ^= 0x40
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}

	b := s3Bucket(t, miniotest.Start(t))
	metrics := agent.NewMetrics(nil)
	a := newAgent(t, b, agent.Config{LogDirs: []string{src}}, metrics)
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Corrupt != 1 || rep.Archived != len(p.Segments)-2 {
		t.Fatalf("want 1 corrupt and %d archived: %+v", len(p.Segments)-2, rep)
	}
	for _, m := range manifests(t, b) {
		if m.BaseOffset == p.Segments[1] {
			t.Fatalf("corrupt segment %d has a manifest", m.BaseOffset)
		}
	}
	// The error names the file and the batch position.
	_, scanErr := segment.Scan(strings.NewReader(string(data)), int64(len(data)), victim, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: p.Segments[1]}})
	var ce *segment.CorruptionError
	if !errors.As(scanErr, &ce) || ce.Pos != batchPos || ce.File != victim || ce.Check != "crc" {
		t.Fatalf("want a crc error at byte %d of %s, got %v", batchPos, victim, scanErr)
	}
	if !regexp.MustCompile(`byte \d+`).MatchString(scanErr.Error()) {
		t.Fatalf("error does not name the position: %v", scanErr)
	}
}
