package kafkatest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type recKey struct {
	partition int32
	offset    int64
}

// produce sends n records to topic, alternating partitions 0 and 1, and returns what was
// written where. Each record is checked to be acked.
func produce(t *testing.T, cl *kgo.Client, topic string, from, n int) map[recKey]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := make([]*kgo.Record, 0, n)
	// Incompressible-ish values so that compressed batches still fill segments.
	rng := rand.New(rand.NewPCG(uint64(from), 1))
	for i := from; i < from+n; i++ {
		recs = append(recs, &kgo.Record{
			Topic:     topic,
			Partition: int32(i % 2),
			Key:       fmt.Appendf(nil, "k%06d", i),
			Value:     fmt.Appendf(nil, "value-%06d-%016x%016x%016x%016x", i, rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()),
			Headers:   []kgo.RecordHeader{{Key: "h", Value: fmt.Appendf(nil, "%d", i)}},
		})
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	got := make(map[recKey]string, n)
	for _, r := range res {
		got[recKey{r.Record.Partition, r.Record.Offset}] = string(r.Record.Key) + "=" + string(r.Record.Value)
	}
	if len(got) != n {
		t.Fatalf("produce: %d distinct (partition, offset) pairs for %d records", len(got), n)
	}
	return got
}

// consumeAll reads partitions 0 and 1 of topic from the start until it has want records.
func consumeAll(t *testing.T, b *Broker, topic string, want int) map[recKey]string {
	t.Helper()
	cl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()},
	}), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(map[recKey]string, want)
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume %s: got %d of %d records: %v", topic, len(got), want, err)
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Fatalf("consume %s[%d]: %v", tp, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			k := recKey{r.Partition, r.Offset}
			if _, dup := got[k]; dup {
				t.Errorf("record %v delivered twice", k)
			}
			got[k] = string(r.Key) + "=" + string(r.Value)
		})
	}
	if len(got) != want {
		t.Fatalf("consume %s: got %d records, want %d", topic, len(got), want)
	}
	return got
}

func sameRecords(t *testing.T, what string, got, want map[recKey]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d records, want %d", what, len(got), len(want))
	}
	bad := 0
	for k, v := range want {
		if got[k] != v {
			if bad < 5 {
				t.Errorf("%s: partition %d offset %d: got %.30q, want %.30q", what, k.partition, k.offset, got[k], v)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d records differ", what, bad)
	}
}

func checkConsecutive(t *testing.T, recs map[recKey]string) (next map[int32]int64) {
	t.Helper()
	next = map[int32]int64{}
	for k := range recs {
		next[k.partition]++
	}
	for k := range recs {
		if k.offset < 0 || k.offset >= next[k.partition] {
			t.Errorf("partition %d: offset %d outside [0,%d): offsets are not 0..n-1", k.partition, k.offset, next[k.partition])
		}
	}
	return next
}

// recordLines counts the per-record lines of DumpLogSegments --deep-iteration output per file.
func recordLines(stdout string) map[string]int {
	n := map[string]int{}
	file := ""
	for line := range strings.SplitSeq(stdout, "\n") {
		if f, ok := strings.CutPrefix(line, "Dumping "); ok {
			file = f
		} else if strings.HasPrefix(line, "| offset: ") {
			n[file]++
		}
	}
	return n
}

// dumpAndCheck runs DumpLogSegments once on the given (valid) segments plus two corrupted copies
// of the first one, and checks that the valid segments have no problems and hold exactly
// wantRecords records, and that the corruption is reported (so DumpProblems is not vacuous): a
// flipped payload byte as an invalid batch, a copy cut mid-batch as trailing invalid bytes.
func dumpAndCheck(t *testing.T, version string, valid []string, wantRecords int) {
	t.Helper()
	data, err := os.ReadFile(valid[0])
	if err != nil {
		t.Error(err)
		return
	}
	if len(data) < 200 {
		t.Errorf("%s: only %d bytes", valid[0], len(data))
		return
	}
	name := filepath.Base(valid[0])
	flipped := filepath.Join(t.TempDir(), name)
	bad := append([]byte(nil), data...)
	bad[len(bad)-10] ^= 0xff // inside the last record of the last batch: CRC mismatch
	cut := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(flipped, bad, 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.WriteFile(cut, data[:len(data)-7], 0o644); err != nil {
		t.Error(err)
		return
	}
	// The flipped copy goes last: with a compressed batch, deep iteration may throw after
	// printing "isvalid: false", and the tool stops there.
	files := append(slices.Clone(valid), cut, flipped)
	probs, stdout := checkSegments(t, version, files, nil)
	kinds := map[string][]string{}
	for _, p := range probs {
		if p.File != flipped && p.File != cut {
			t.Errorf("DumpLogSegments problem: %v", p)
		}
		kinds[p.File] = append(kinds[p.File], p.Kind)
	}
	if !slices.Contains(kinds[flipped], ProblemInvalidBatch) {
		t.Errorf("flipped byte in %s not reported as %s: %v\nstdout tail:\n%s", flipped, ProblemInvalidBatch, kinds, tail(stdout, 8))
	}
	if !slices.Contains(kinds[cut], ProblemInvalidBytes) {
		t.Errorf("truncated %s not reported as %s: %v\nstdout tail:\n%s", cut, ProblemInvalidBytes, kinds, tail(stdout, 8))
	}
	counts := recordLines(stdout)
	got := 0
	for _, f := range valid {
		got += counts[f]
	}
	if got != wantRecords {
		t.Errorf("DumpLogSegments --deep-iteration printed %d records for %d segments, want %d", got, len(valid), wantRecords)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestBrokerRoundTrip is the main end-to-end check on the default (4.x) line: small segments,
// two partitions, produce/consume, rolled segments on disk, clean stop, restart on the same log
// dir without formatting (same records at the same offsets), and Kafka's DumpLogSegments
// finding nothing wrong in the rolled segments but flagging corrupted copies.
func TestBrokerRoundTrip(t *testing.T) {
	t.Parallel()
	const (
		topic    = "roundtrip"
		segBytes = 16384
		n        = 3000
	)
	b := Start(t, Options{SegmentBytes: segBytes})
	if b.Version != DefaultVersion || b.NodeID != 1 || ValidClusterID(b.ClusterID) != nil {
		t.Fatalf("broker identity: version %q node %d cluster %q", b.Version, b.NodeID, b.ClusterID)
	}
	b.CreateTopic(t, topic, 2, nil)

	// Check the small segment size really reached the topic (4.x: internal.segment.bytes).
	adm := b.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe configs: %v", err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs: %v %v", err, rc.Err)
	}
	key := TopicSegmentBytesKey(b.Version, segBytes)
	found := false
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil && *c.Value == fmt.Sprint(segBytes) {
			found = true
		}
	}
	if !found && key == "segment.bytes" { // internal configs are not described; disk checks below
		t.Errorf("topic config %s=%d not set", key, segBytes)
	}

	// Half uncompressed, half zstd, small batches so that segments hold several batches.
	want := produce(t, b.Client(t, kgo.ProducerBatchMaxBytes(4096), kgo.ProducerBatchCompression(kgo.NoCompression())), topic, 0, n/2)
	for k, v := range produce(t, b.Client(t, kgo.ProducerBatchMaxBytes(4096), kgo.ProducerBatchCompression(kgo.ZstdCompression())), topic, n/2, n/2) {
		want[k] = v
	}
	ends := checkConsecutive(t, want)
	sameRecords(t, "consumed", consumeAll(t, b, topic, n), want)

	offs, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	for p, end := range ends {
		o, ok := offs.Lookup(topic, p)
		if !ok || o.Err != nil || o.Offset != end {
			t.Errorf("partition %d: end offset %+v, want %d", p, o, end)
		}
	}

	segs := map[int32][]string{}
	for p := range int32(2) {
		files, err := SegmentFiles(b.PartitionDir(topic, p))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < 2 {
			t.Fatalf("partition %d: %d segment(s) in %s, want a rolled log (segment size %d)", p, len(files), b.PartitionDir(topic, p), segBytes)
		}
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > 2*segBytes {
				t.Errorf("%s: %d bytes, segment size is %d", f, st.Size(), segBytes)
			}
		}
		segs[p] = files
	}
	t.Logf("segments: partition 0: %d, partition 1: %d", len(segs[0]), len(segs[1]))

	if err := b.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if b.Running() {
		t.Fatal("broker still running after Stop")
	}

	// Restart on the same log dir (no format) while DumpLogSegments checks the rolled segments.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var rolled []string
		wantRecords := 0
		for p, files := range segs {
			rolled = append(rolled, files[:len(files)-1]...)
			// Offsets are 0..end-1, so the rolled segments hold exactly the active
			// segment's base offset records.
			var active int64
			if _, err := fmt.Sscanf(filepath.Base(files[len(files)-1]), "%020d.log", &active); err != nil {
				t.Errorf("segment name %s: %v", files[len(files)-1], err)
			}
			if active <= 0 || active >= ends[p] {
				t.Errorf("partition %d: active segment base offset %d, end offset %d", p, active, ends[p])
			}
			wantRecords += int(active)
		}
		dumpAndCheck(t, b.Version, rolled, wantRecords)
	}()

	b2 := b.Restart(t)
	if b2.LogDir() != b.LogDir() || b2.ClusterID != b.ClusterID || b2.NodeID != b.NodeID || b2.Addr() == "" {
		t.Errorf("restarted broker: dir %s cluster %s node %d", b2.LogDir(), b2.ClusterID, b2.NodeID)
	}
	sameRecords(t, "consumed after restart", consumeAll(t, b2, topic, n), want)
	// The log is writable and continues at the old end offsets.
	more := produce(t, b2.Client(t), topic, n, 10)
	for k := range more {
		if k.offset < ends[k.partition] {
			t.Errorf("record produced after restart at partition %d offset %d, below old end %d", k.partition, k.offset, ends[k.partition])
		}
	}
	for k, v := range more {
		want[k] = v
	}

	wg.Wait() // DumpLogSegments is done with the rolled segments

	// Crash (SIGKILL: no clean-shutdown marker) and restart: log recovery keeps every
	// acknowledged record.
	b2.Kill()
	if b2.Running() {
		t.Fatal("broker still running after Kill")
	}
	if err := b2.Stop(); err != nil {
		t.Errorf("Stop after Kill: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b2.LogDir(), ".kafka_cleanshutdown")); err == nil {
		t.Error(".kafka_cleanshutdown exists after SIGKILL")
	}
	b3 := b2.Restart(t)
	sameRecords(t, "consumed after crash", consumeAll(t, b3, topic, len(want)), want)
	if log, err := b3.ReadLog(); err != nil || !strings.Contains(log, "starting Kafka "+b3.Version) {
		t.Errorf("ReadLog: %v (%d bytes)", err, len(log))
	}
}

// TestBroker39 boots the second line (3.9.x), produces and consumes, and runs its
// DumpLogSegments (kafka.tools.DumpLogSegments in kafka_2.13) on the result.
func TestBroker39(t *testing.T) {
	t.Parallel()
	const topic = "line39"
	b := Start(t, Options{Version: SecondVersion, SegmentBytes: 8192})
	b.CreateTopic(t, topic, 2, nil)
	want := produce(t, b.Client(t, kgo.ProducerBatchMaxBytes(2048)), topic, 0, 400)
	checkConsecutive(t, want)
	sameRecords(t, "consumed", consumeAll(t, b, topic, len(want)), want)
	md, err := b.Admin(t).BrokerMetadata(context.Background())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if md.Cluster != b.ClusterID || len(md.Brokers) != 1 || md.Brokers[0].NodeID != b.NodeID {
		t.Errorf("metadata: cluster %q brokers %v; want cluster %q node %d", md.Cluster, md.Brokers, b.ClusterID, b.NodeID)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var all []string
	for p := range int32(2) {
		files, err := SegmentFiles(b.PartitionDir(topic, p))
		if err != nil || len(files) < 2 {
			t.Fatalf("partition %d segments: %v %v", p, files, err)
		}
		all = append(all, files...)
	}
	// Stopped cleanly, so the active segments are complete too: every record is dumped.
	dumpAndCheck(t, b.Version, all, len(want))
}

func TestLibsDir(t *testing.T) {
	const v = "0.0.1-test"
	dir := t.TempDir()
	t.Setenv(LibsEnvVar(v), dir)
	if got := LibsEnvVar("4.4.0"); got != "SEGVAULT_KAFKA_LIBS_4_4_0" {
		t.Errorf("LibsEnvVar(4.4.0) = %s", got)
	}
	if _, err := LibsDir(v); err == nil || !strings.Contains(err.Error(), "make kafka-jars") {
		t.Errorf("empty libs dir: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.jar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LibsDir(v); err == nil || !strings.Contains(err.Error(), "kafka_<scala>-"+v) {
		t.Errorf("libs dir without the Kafka jar: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kafka_2.13-"+v+".jar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := LibsDir(v); err != nil || got != dir {
		t.Errorf("LibsDir = %q, %v; want %q", got, err, dir)
	}
	t.Setenv(LibsEnvVar(v), filepath.Join(dir, "missing"))
	if _, err := LibsDir(v); err == nil {
		t.Error("missing libs dir: no error")
	}
	// Without the env var the module's .tools dir is used.
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("module root %s: %v", root, err)
	}
	t.Setenv(LibsEnvVar(v), "")
	if _, err := LibsDir(v); err == nil || !strings.Contains(err.Error(), filepath.Join(root, ".tools", "kafka", v, "libs")) {
		t.Errorf("LibsDir without env: err = %v", err)
	}
}

// fakeTB records Skip/Fatal instead of ending the real test.
type fakeTB struct {
	testing.TB
	mu               sync.Mutex
	skipped, fataled bool
	msg              string
}

func (f *fakeTB) Helper()                     {}
func (f *fakeTB) Cleanup(func())              {}
func (f *fakeTB) Logf(string, ...any)         {}
func (f *fakeTB) TempDir() string             { return os.TempDir() }
func (f *fakeTB) Skip(args ...any)            { f.end(false, fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(s string, a ...any)   { f.end(true, fmt.Sprintf(s, a...)) }
func (f *fakeTB) Errorf(s string, a ...any)   { f.end(true, fmt.Sprintf(s, a...)) }
func (f *fakeTB) Skipf(s string, args ...any) { f.end(false, fmt.Sprintf(s, args...)) }
func (f *fakeTB) end(fatal bool, msg string) {
	f.mu.Lock()
	f.fataled, f.skipped, f.msg = fatal, !fatal, msg
	f.mu.Unlock()
	runtime.Goexit()
}

func runFake(fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// TestMissingKafka: missing jars skip locally but fail under CI=true, for Start and
// DumpLogSegments alike, with a message pointing at `make kafka-jars`.
func TestMissingKafka(t *testing.T) {
	const v = "0.0.2-missing"
	t.Setenv(LibsEnvVar(v), filepath.Join(t.TempDir(), "nope"))
	for _, ci := range []string{"", "false", "true", "1"} {
		t.Setenv("CI", ci)
		wantFatal := ci == "true" || ci == "1"
		for name, fn := range map[string]func(testing.TB){
			"Start":           func(tb testing.TB) { Start(tb, Options{Version: v}) },
			"DumpLogSegments": func(tb testing.TB) { _, _, _ = DumpLogSegments(tb, v, "x.log") },
		} {
			f := runFake(fn)
			if f.fataled != wantFatal || f.skipped == wantFatal {
				t.Errorf("CI=%q %s: fatal=%v skipped=%v, want fatal=%v", ci, name, f.fataled, f.skipped, wantFatal)
			}
			if !strings.Contains(f.msg, "make kafka-jars") {
				t.Errorf("CI=%q %s: message %q does not mention make kafka-jars", ci, name, f.msg)
			}
		}
	}
}

func TestClusterID(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		id := NewClusterID()
		if len(id) != 22 || strings.HasPrefix(id, "-") || ValidClusterID(id) != nil || seen[id] {
			t.Fatalf("bad or repeated cluster id %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "abc", "AAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAA+/"} {
		if ValidClusterID(bad) == nil {
			t.Errorf("ValidClusterID(%q) = nil", bad)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	libs, java := "/nonexistent", "java"
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"managed prop", Options{Version: "4.4.0", Props: map[string]string{"log.dirs": "/x"}}, "Options.LogDir"},
		{"small 4.x segments", Options{Version: "4.4.0", Props: map[string]string{"log.segment.bytes": "16384"}}, "Options.SegmentBytes"},
		{"skip format without dir", Options{Version: "4.4.0", SkipFormat: true}, "needs Options.LogDir"},
		{"skip format on empty dir", Options{Version: "4.4.0", SkipFormat: true, LogDir: t.TempDir()}, "not formatted"},
		{"bad cluster id", Options{Version: "4.4.0", ClusterID: "nope"}, "not a Kafka uuid"},
	} {
		_, err := prepare(t, tc.opts, libs, java)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	// A formatted dir needs SkipFormat, and SkipFormat reads cluster and node id from it.
	dir := t.TempDir()
	meta := "#\n#Sat Nov 21 23:26:00 UTC 2026\nnode.id=7\ndirectory.id=sU0Xur-zE4pRTRP9BXgLfw\nversion=1\ncluster.id=AAAAAAAAAAAAAAAAAAAABw\n"
	if err := os.WriteFile(filepath.Join(dir, "meta.properties"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prepare(t, Options{Version: "4.4.0", LogDir: dir}, libs, java); err == nil || !strings.Contains(err.Error(), "SkipFormat") {
		t.Errorf("formatted dir without SkipFormat: err = %v", err)
	}
	if _, err := prepare(t, Options{Version: "4.4.0", LogDir: dir, SkipFormat: true}, libs, java); err == nil || !strings.Contains(err.Error(), "__cluster_metadata-0") {
		t.Errorf("no metadata log: err = %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "__cluster_metadata-0"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := prepare(t, Options{Version: "4.4.0", LogDir: dir, SkipFormat: true}, libs, java)
	if err != nil || b.NodeID != 7 || b.ClusterID != "AAAAAAAAAAAAAAAAAAAABw" {
		t.Errorf("SkipFormat identity: %+v, %v", b, err)
	}
	if _, err := prepare(t, Options{Version: "4.4.0", LogDir: dir, SkipFormat: true, NodeID: 2}, libs, java); err == nil {
		t.Error("SkipFormat with a different node id: no error")
	}
	if got := TopicSegmentBytesKey("4.4.0", 16384); got != "internal.segment.bytes" {
		t.Errorf("TopicSegmentBytesKey(4.4.0, 16384) = %s", got)
	}
	if got := TopicSegmentBytesKey("3.9.2", 16384); got != "segment.bytes" {
		t.Errorf("TopicSegmentBytesKey(3.9.2, 16384) = %s", got)
	}
	if got := TopicSegmentBytesKey("4.4.0", 1<<20); got != "segment.bytes" {
		t.Errorf("TopicSegmentBytesKey(4.4.0, 1MiB) = %s", got)
	}
}

func TestDumpProblems(t *testing.T) {
	stdout := `Dumping /d/t-0/00000000000000000000.log
Log starting offset: 0
baseOffset: 0 lastOffset: 1 count: 2 baseSequence: 0 lastSequence: 1 producerId: 0 producerEpoch: 0 partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty position: 0 CreateTime: 1 size: 100 magic: 2 compresscodec: none crc: 1 isvalid: true
| offset: 0 CreateTime: 1 keySize: 1 valueSize: 1 sequence: 0 headerKeys: [java.lang.IllegalStateException: not a problem]
| offset: 1 CreateTime: 1 keySize: 1 valueSize: 1 sequence: 1 headerKeys: []
Dumping /d/t-0/00000000000000000002.log
Log starting offset: 2
baseOffset: 2 lastOffset: 2 count: 1 baseSequence: 0 lastSequence: 1 producerId: 0 producerEpoch: 0 partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty position: 0 CreateTime: 1 size: 100 magic: 2 compresscodec: none crc: 1 isvalid: false
Found 7 invalid bytes at the end of 00000000000000000002.log
Non-consecutive offsets in /d/t-0/00000000000000000002.log
  -1 is followed by 2
  2 is followed by 4
Non-consecutive offsets in /d/t-0/00000000000000000000.log
  -1 is followed by 5
`
	stderr := "Exception in thread \"main\" org.apache.kafka.common.errors.CorruptRecordException: bad\n\tat x.y(Z.java:1)\n12:00:00.000 [main] ERROR kafka.Foo - boom\n12:00:00.000 [main] WARN kafka.Foo - fine\n"
	got := DumpProblems(stdout, stderr)
	want := []string{
		"/d/t-0/00000000000000000002.log: invalid-batch",
		"/d/t-0/00000000000000000002.log: invalid-bytes",
		"/d/t-0/00000000000000000002.log: non-consecutive-offsets",
		"?: exception",
		"?: error",
	}
	if len(got) != len(want) {
		t.Fatalf("DumpProblems = %v, want %d problems", got, len(want))
	}
	for i, p := range got {
		if !strings.HasPrefix(p.String(), want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, p, want[i])
		}
	}
	if files := DumpedFiles(stdout); len(files) != 2 || files[1] != "/d/t-0/00000000000000000002.log" {
		t.Errorf("DumpedFiles = %v", files)
	}
	if p := DumpProblems("Dumping a.log\nbaseOffset: 0 isvalid: true\n| offset: 0 isvalid: true\n", ""); len(p) != 0 {
		t.Errorf("clean output: %v", p)
	}
}

// Compile-time check that the admin helper returns the kadm type callers expect.
var _ func(*Broker, testing.TB) *kadm.Client = (*Broker).Admin
