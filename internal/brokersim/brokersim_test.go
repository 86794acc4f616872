package brokersim

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

func allTopics() []TopicSpec {
	var ts []TopicSpec
	for _, c := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		ts = append(ts, TopicSpec{Name: "codec-" + c, Partitions: 2, Codec: c, Idempotent: true, Records: 1500, Headers: 1})
	}
	return append(ts,
		TopicSpec{Name: "plain", Partitions: 1, Records: 800, KeyBytes: -1, TimestampJitter: 20 * time.Millisecond},
		TopicSpec{Name: "txn", Partitions: 3, Codec: "zstd", Transactional: true, AbortEvery: 3, Producers: 2,
			Records: 3000, BatchRecords: 40, TxnBatches: 2},
		TopicSpec{Name: "compacted", Partitions: 1, Codec: "lz4", Idempotent: true, Compacted: true, Records: 2000,
			KeySpace: 50, TombstoneEvery: 37},
	)
}

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, NodeID: 3, SegmentBytes: 64 << 10, Seed: 42, Topics: allTopics()}
	start := time.Now()
	res, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d topics in %v", len(res.Topics), time.Since(start))
	verifyLogDir(t, res, DefaultIndexIntervalBytes, false)

	var rolled, aborted, txnFiles int
	for _, tr := range res.Topics {
		if len(tr.Partitions) != tr.Spec.Partitions {
			t.Fatalf("%s: %d partitions", tr.Name, len(tr.Partitions))
		}
		n := 0
		for _, pr := range tr.Partitions {
			n += len(pr.Records)
			rolled += len(pr.Segments) - 1
			aborted += pr.AbortedTxns
			for _, r := range pr.Records {
				if r.Aborted != (tr.Name == "txn" && r.Aborted) {
					t.Fatalf("%s: aborted record outside the txn topic", tr.Name)
				}
				if (r.ProducerID >= 0) != tr.Spec.Idempotent {
					t.Fatalf("%s: producer id %d, idempotent=%v", tr.Name, r.ProducerID, tr.Spec.Idempotent)
				}
			}
			m, _ := filepath.Glob(filepath.Join(pr.Dir, "*.txnindex"))
			txnFiles += len(m)
		}
		if n != tr.Spec.Records {
			t.Fatalf("%s: %d records, want %d", tr.Name, n, tr.Spec.Records)
		}
	}
	if rolled == 0 || aborted == 0 || txnFiles == 0 {
		t.Fatalf("want rolled segments, aborted transactions and txn indexes; got %d, %d, %d", rolled, aborted, txnFiles)
	}
	// Root files.
	for _, f := range append([]string{index.MetaPropertiesFile}, index.RootCheckpointFiles...) {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) > 0 {
		t.Fatalf("temp files left: %v", m)
	}
	// The same seed gives the same record contents.
	res2, err := Generate(context.Background(), Config{Dir: t.TempDir(), NodeID: 3, SegmentBytes: 64 << 10, Seed: 42,
		Topics: []TopicSpec{allTopics()[0]}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := res.Partition("codec-none", 1).Records, res2.Partition("codec-none", 1).Records
	if len(a) != len(b) || string(a[7].Value) != string(b[7].Value) || a[7].Timestamp-a[0].Timestamp != b[7].Timestamp-b[0].Timestamp {
		t.Fatal("same seed, different records")
	}
	if res.ClusterID != res2.ClusterID {
		t.Fatal("same seed, different cluster id")
	}
}

func TestGenerateSpeed(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	cfg := Config{Dir: t.TempDir(), Seed: 1, Topics: []TopicSpec{
		{Name: "fast", Partitions: 4, Codec: "lz4", Idempotent: true, Records: 50000, ValueBytes: 100},
	}}
	start := time.Now()
	res, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("50000 records x 100 bytes, 4 partitions, lz4: %v", d)
	verifyLogDir(t, res, DefaultIndexIntervalBytes, false)
	if d > 20*time.Second {
		t.Fatalf("generation took %v", d)
	}
}

func TestValidate(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no dir":         {},
		"bad topic":      {Dir: "x", Topics: []TopicSpec{{Name: "a/b"}}},
		"bad codec":      {Dir: "x", Topics: []TopicSpec{{Name: "a", Codec: "brotli"}}},
		"abort w/o txn":  {Dir: "x", Topics: []TopicSpec{{Name: "a", AbortEvery: 2}}},
		"duplicate":      {Dir: "x", Topics: []TopicSpec{{Name: "a"}, {Name: "a"}}},
		"negative count": {Dir: "x", Topics: []TopicSpec{{Name: "a", Records: -1}}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLive(t *testing.T) {
	dir := t.TempDir()
	var stepsMu sync.Mutex
	var steps []string
	cfg := Config{Dir: dir, SegmentBytes: 16 << 10, Seed: 7, StepHook: func(s string) {
		stepsMu.Lock()
		steps = append(steps, s)
		stepsMu.Unlock()
	}, Topics: []TopicSpec{
		{Name: "events", Partitions: 2, Codec: "snappy", Idempotent: true, Records: 500},
		{Name: "txn", Partitions: 1, Transactional: true, AbortEvery: 2, Records: 400, BatchRecords: 20},
		{Name: "kv", Partitions: 1, Codec: "gzip", Idempotent: true, Compacted: true, Records: 1500, KeySpace: 30},
	}}
	ctx := context.Background()
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	stop := b.RunProducer("events", 5000)
	// A reader walks the partition like the agent would, while it is written:
	// only a torn tail of the active segment may fail to parse.
	readerDone := make(chan error, 1)
	quitReader := make(chan struct{})
	go func() {
		for {
			select {
			case <-quitReader:
				readerDone <- nil
				return
			default:
			}
			_ = b.Result()
			m, _ := filepath.Glob(filepath.Join(dir, "events-1", "*.log"))
			for _, path := range m {
				f, err := os.Open(path)
				if err != nil {
					continue // renamed by retention meanwhile
				}
				st, _ := f.Stat()
				_, err = segment.Scan(f, st.Size(), path, segment.ScanOptions{})
				f.Close()
				if err != nil && !segment.IsTruncated(err) {
					readerDone <- err
					return
				}
			}
		}
	}()

	// Append and force a roll while the background producer writes.
	recs, err := b.Append(ctx, "txn", 200)
	if err != nil || len(recs) != 200 {
		t.Fatalf("append: %d records, %v", len(recs), err)
	}
	before := b.Result().Partition("txn", 0)
	if err := b.Roll("txn", 0); err != nil {
		t.Fatal(err)
	}
	after := b.Result().Partition("txn", 0)
	if len(after.Segments) != len(before.Segments)+1 || after.Segments[len(after.Segments)-1] != before.LogEndOffset {
		t.Fatalf("roll: segments %v -> %v (log end %d)", before.Segments, after.Segments, before.LogEndOffset)
	}
	if _, err := os.Stat(filepath.Join(after.Dir, segment.FormatName(before.LogEndOffset, segment.KindIndex))); !os.IsNotExist(err) {
		t.Fatalf("a freshly rolled segment has no index before its first append: %v", err)
	}
	if _, err := b.Append(ctx, "txn", 50); err != nil {
		t.Fatal(err)
	}
	if err := b.BumpLeaderEpoch("txn", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "txn", 20); err != nil {
		t.Fatal(err)
	}
	txnBefore := b.Result()
	tp0 := txnBefore.Partition("txn", 0)
	lec0, _ := os.ReadFile(filepath.Join(tp0.Dir, index.LeaderEpochCheckpointFile))
	if want := "0\n2\n0 0\n1 " + itoa(after.LogEndOffset+50+2) + "\n"; string(lec0) != want {
		t.Fatalf("leader-epoch-checkpoint after a new epoch %q, want %q", lec0, want)
	}
	txnBefore.Topics = []TopicResult{*txnBefore.Topic("txn")}
	verifyLogDir(t, txnBefore, DefaultIndexIntervalBytes, false)

	// Retention on the background-written topic.
	evBefore := b.Result().Partition("events", 0)
	for deadline := time.Now().Add(20 * time.Second); len(evBefore.Segments) < 3 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		evBefore = b.Result().Partition("events", 0)
	}
	if len(evBefore.Segments) < 3 {
		t.Fatalf("events-0 has segments %v; want several", evBefore.Segments)
	}
	base, err := b.DeleteOldestSegment("events", 0)
	if err != nil || base != evBefore.Segments[0] {
		t.Fatalf("delete oldest: %d, %v", base, err)
	}
	deleted, _ := filepath.Glob(filepath.Join(evBefore.Dir, "*.deleted"))
	if len(deleted) < 3 {
		t.Fatalf(".deleted files: %v", deleted)
	}
	lec, _ := os.ReadFile(filepath.Join(evBefore.Dir, index.LeaderEpochCheckpointFile))
	if want := "0\n1\n0 " + itoa(evBefore.Segments[1]) + "\n"; string(lec) != want {
		t.Fatalf("leader-epoch-checkpoint after retention %q, want %q", lec, want)
	}

	// Compaction of the first kv segment.
	kv := b.Result().Partition("kv", 0)
	if len(kv.Segments) < 3 {
		t.Fatalf("kv segments %v", kv.Segments)
	}
	oldLog := filepath.Join(kv.Dir, segment.FormatName(kv.Segments[0], segment.KindLog))
	oldInfo, _ := os.Stat(oldLog)
	if err := b.Compact("kv", 0, kv.Segments[0]); err != nil {
		t.Fatal(err)
	}
	newInfo, err := os.Stat(oldLog)
	if err != nil || newInfo.Size() >= oldInfo.Size() {
		t.Fatalf("compacted segment: %v bytes (was %d), %v", newInfo.Size(), oldInfo.Size(), err)
	}
	if _, err := os.Stat(oldLog + segment.SuffixDeleted); err != nil {
		t.Fatalf("old segment not renamed .deleted: %v", err)
	}
	if err := b.Compact("kv", 0, kv.Segments[len(kv.Segments)-1]); err == nil {
		t.Fatal("compacting the active segment must fail")
	}
	if err := b.Compact("events", 0, evBefore.Segments[1]); err == nil {
		t.Fatal("compacting a delete-policy topic must fail")
	}

	// Delete and re-create a topic.
	oldID := b.Result().Topic("txn").ID
	if err := b.DeleteTopic(ctx, "txn"); err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "txn-0.*-delete"))
	if len(m) != 1 {
		t.Fatalf("-delete dirs: %v", m)
	}
	if dn, ok := segment.ParseDirName(filepath.Base(m[0])); !ok || dn.Suffix != segment.DirSuffixDelete || dn.Topic != "txn" {
		t.Fatalf("bad -delete dir name %s", m[0])
	}
	if _, err := b.Append(ctx, "txn", 10); err == nil {
		t.Fatal("append to a deleted topic must fail")
	}
	if err := b.CreateTopic(ctx, TopicSpec{Name: "txn", Partitions: 1, Transactional: true, AbortEvery: 2, Records: 100}); err != nil {
		t.Fatal(err)
	}
	if id := b.Result().Topic("txn").ID; id == oldID {
		t.Fatal("re-created topic kept its id")
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(quitReader)
	if err := <-readerDone; err != nil {
		t.Fatalf("concurrent reader: %v", err)
	}
	res := b.Result()
	stepsMu.Lock()
	got := strings.Join(steps, "|")
	stepsMu.Unlock()
	for _, want := range []string{"retention: segment renamed .deleted", "compact: cleaned written|compact: renamed to .swap|compact: old segment renamed .deleted|compact: swap installed", "delete topic: dir renamed -delete"} {
		if !strings.Contains(got, want) {
			t.Fatalf("steps %q lack %q", got, want)
		}
	}
	if err := b.PurgeDeleted(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*", "*.deleted")); len(m) > 0 {
		t.Fatalf("purge left %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*-delete")); len(m) > 0 {
		t.Fatalf("purge left %v", m)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything on disk is still a valid Kafka log dir; the compacted
	// partition is checked separately.
	kvRes := *res.Topic("kv")
	res.Topics = slicesDelete(res.Topics, "kv")
	verifyLogDir(t, res, DefaultIndexIntervalBytes, false)
	verifyCompacted(t, &kvRes)
	ev := res.Partition("events", 0)
	if ev.LogStartOffset != evBefore.Segments[1] {
		t.Fatalf("log start %d", ev.LogStartOffset)
	}
	cl := readCheckpoint(t, filepath.Join(dir, index.CleanerOffsetFile))
	if cl["kv 0"] != kv.Segments[1] {
		t.Fatalf("cleaner-offset-checkpoint %v", cl)
	}
	tp := res.Partition("txn", 0)
	if len(tp.Records) != 100 || tp.Records[0].Offset != 0 {
		t.Fatalf("re-created txn topic: %d records from %d", len(tp.Records), tp.Records[0].Offset)
	}
}

// verifyCompacted checks a compacted partition: every record still on disk
// is as produced, and the latest record of each key is there.
func verifyCompacted(t *testing.T, tr *TopicResult) {
	t.Helper()
	for _, pr := range tr.Partitions {
		segs := readPartition(t, pr.Dir)
		onDisk := map[int64]bool{}
		prev := int64(-1)
		for _, s := range segs {
			idx, tidx := expectedIndexes(s.batches, s.base, DefaultIndexIntervalBytes, s.base != pr.Segments[len(pr.Segments)-1])
			active := s.base == pr.Segments[len(pr.Segments)-1]
			checkIndexFile(t, strings.TrimSuffix(s.path, ".log")+".index", idx, OffsetIndexAllocated, active)
			checkIndexFile(t, strings.TrimSuffix(s.path, ".log")+".timeindex", tidx, TimeIndexAllocated, active)
			for _, b := range s.batches {
				if b.hdr.BaseOffset <= prev {
					t.Fatalf("offsets go back at %d", b.hdr.BaseOffset)
				}
				prev = b.hdr.LastOffset()
				for _, r := range b.records {
					onDisk[b.hdr.BaseOffset+int64(r.OffsetDelta)] = true
				}
			}
		}
		latest := map[string]int64{}
		byOff := map[int64]Record{}
		for _, r := range pr.Records {
			latest[string(r.Key)] = r.Offset
			byOff[r.Offset] = r
		}
		for k, off := range latest {
			if !onDisk[off] {
				t.Fatalf("latest record of key %s (offset %d) was compacted away", k, off)
			}
		}
		if len(onDisk) >= len(pr.Records) {
			t.Fatalf("compaction removed nothing (%d on disk)", len(onDisk))
		}
		for off := range onDisk {
			if _, ok := byOff[off]; !ok {
				t.Fatalf("offset %d on disk was never produced", off)
			}
		}
	}
}

func slicesDelete(ts []TopicResult, name string) []TopicResult {
	var out []TopicResult
	for _, t := range ts {
		if t.Name != name {
			out = append(out, t)
		}
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestShutdownClean(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b, err := Start(ctx, Config{Dir: dir, SegmentBytes: 8 << 10, IndexIntervalBytes: 1024, Seed: 3, Topics: []TopicSpec{
		{Name: "a", Partitions: 2, Codec: "zstd", Transactional: true, AbortEvery: 2, Records: 600, BatchRecords: 10},
		{Name: "empty", Partitions: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "a", 77); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	marker, err := os.ReadFile(filepath.Join(dir, index.CleanShutdownFile))
	if err != nil || !strings.HasPrefix(string(marker), `{"version":0,"brokerEpoch":`) {
		t.Fatalf(".kafka_cleanshutdown %q: %v", marker, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".lock")); err != nil {
		t.Fatal(err)
	}
	res := b.Result()
	verifyLogDir(t, res, 1024, true)
	// The empty partition's indexes are trimmed to nothing.
	for _, k := range []segment.FileKind{segment.KindIndex, segment.KindTimeIndex} {
		st, err := os.Stat(filepath.Join(res.Partition("empty", 0).Dir, segment.FormatName(0, k)))
		if err != nil || st.Size() != 0 {
			t.Fatalf("empty partition %s: %v", k, err)
		}
	}
}
