package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// produced is what the test producers were acknowledged, per partition.
type produced struct {
	mu      sync.Mutex
	records map[string][]*kgo.Record // "topic/partition" -> acknowledged records, aborted ones excluded
}

func (p *produced) add(r *kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
	p.records[k] = append(p.records[k], r)
}

// diskWatch records every rolled segment version seen in a real broker's
// log dir: "topic/partition/base" -> .log SHA-256 prefixes. A version is
// rolled when a later segment exists beside it; the cleaner's finished output
// (.swap) and a segment Kafka has marked for deletion (.deleted) are rolled
// versions too, so a version that lives only briefly under its own name is
// still seen. Hashes are cached by path, size and mtime, so a pass stays cheap
// and the poll keeps up under load.
type diskWatch struct {
	seen map[string]diskSeen
}

type diskSeen struct {
	size  int64
	mtime time.Time
	sum   string
}

func (w *diskWatch) hash(path string) (string, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", false
	}
	if c, ok := w.seen[path]; ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) {
		return c.sum, true
	}
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) != fi.Size() {
		return "", false
	}
	sum := sha256.Sum256(data)
	if w.seen == nil {
		w.seen = map[string]diskSeen{}
	}
	s := hex.EncodeToString(sum[:])[:12]
	w.seen[path] = diskSeen{size: fi.Size(), mtime: fi.ModTime(), sum: s}
	return s, true
}

func (w *diskWatch) pass(logDir string, into map[string]map[string]bool, last map[string]string) {
	ents, _ := os.ReadDir(logDir)
	for _, e := range ents {
		dn, ok := segment.ParseDirName(e.Name())
		if !ok || dn.Suffix != "" || !e.IsDir() {
			continue
		}
		dir := filepath.Join(logDir, e.Name())
		files, _ := os.ReadDir(dir)
		var bases []int64 // live .log files
		type extra struct {
			base int64
			name string
		}
		var finished []extra // .log.swap and .log.deleted
		for _, f := range files {
			n, ok := segment.ParseFileName(f.Name())
			if !ok || n.Kind != segment.KindLog {
				continue
			}
			switch n.Suffix {
			case "":
				bases = append(bases, n.BaseOffset)
			case segment.SuffixSwap, segment.SuffixDeleted:
				finished = append(finished, extra{n.BaseOffset, f.Name()})
			}
		}
		sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
		add := func(base int64, name string, current bool) {
			sum, ok := w.hash(filepath.Join(dir, name))
			if !ok {
				return
			}
			k := fmt.Sprintf("%s/%d/%d", dn.Topic, dn.Partition, base)
			if into[k] == nil {
				into[k] = map[string]bool{}
			}
			into[k][sum] = true
			if current {
				last[k] = sum
			}
		}
		for i := 0; i+1 < len(bases); i++ {
			add(bases[i], segment.FormatName(bases[i], segment.KindLog), true)
		}
		for _, f := range finished {
			if len(bases) > 0 && f.base < bases[len(bases)-1] {
				add(f.base, f.name, false)
			}
		}
	}
}

func archivedByBase(t *testing.T, b uploader.Bucket) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, m := range manifests(t, b) {
		if m.Kind != archive.KindSegment {
			continue
		}
		k := fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.BaseOffset)
		if out[k] == nil {
			out[k] = map[string]bool{}
		}
		if out[k][m.ContentID] {
			t.Errorf("%s: version %s committed twice", k, m.ContentID)
		}
		out[k][m.ContentID] = true
	}
	return out
}

// lastArchived returns, per "topic/partition", the last offset the archive holds.
func lastArchived(t *testing.T, b uploader.Bucket) map[string]int64 {
	out := map[string]int64{}
	for _, m := range manifests(t, b) {
		k := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
		if m.Kind == archive.KindSegment && m.Summary.LastOffset > out[k] {
			out[k] = m.Summary.LastOffset
		}
		if _, ok := out[k]; !ok {
			out[k] = -1
		}
	}
	return out
}

// consumeAll reads every partition of topics from the earliest offset with
// read_committed until nothing more arrives (compacted logs and logs ending
// in aborted transactions have no readable record at their end offset).
func consumeAll(t *testing.T, br *kafkatest.Broker, topics ...string) map[string][]*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	cl := br.Client(t, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	got := map[string][]*kgo.Record{}
	quiet := 0
	for quiet < 3 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("fetch %s/%d: %v", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			k := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			got[k] = append(got[k], r)
			n++
		})
		if n == 0 && len(got) > 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return got
}

// sameRecord compares what a consumer got with what was produced.
func sameRecord(a, b *kgo.Record) error {
	if a.Offset != b.Offset || string(a.Key) != string(b.Key) || string(a.Value) != string(b.Value) ||
		a.Timestamp.UnixMilli() != b.Timestamp.UnixMilli() || len(a.Headers) != len(b.Headers) {
		return fmt.Errorf("offset %d: got key %q ts %d (%d headers), want offset %d key %q ts %d (%d headers)",
			a.Offset, a.Key, a.Timestamp.UnixMilli(), len(a.Headers), b.Offset, b.Key, b.Timestamp.UnixMilli(), len(b.Headers))
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || string(a.Headers[i].Value) != string(b.Headers[i].Value) {
			return fmt.Errorf("offset %d: header %d differs", a.Offset, i)
		}
	}
	return nil
}

// checkRecords: for each partition, the consumer got exactly the produced,
// committed records with offsets <= limit[partition] (compacted topics: a
// subset that keeps the last record of every key).
func checkRecords(t *testing.T, got map[string][]*kgo.Record, want *produced, limit map[string]int64, compacted map[string]bool, topics ...string) int {
	t.Helper()
	n := 0
	for k, recs := range want.records {
		var topic string
		var part int
		fmt.Sscanf(k, "%s", &topic)
		i := len(k) - 1
		for k[i] != '/' {
			i--
		}
		topic, part = k[:i], atoi(k[i+1:])
		if !contains(topics, topic) {
			continue
		}
		lim := limit[k]
		var exp []*kgo.Record
		for _, r := range recs {
			if r.Offset <= lim {
				exp = append(exp, r)
			}
		}
		sort.Slice(exp, func(i, j int) bool { return exp[i].Offset < exp[j].Offset })
		g := got[k]
		if compacted[topic] {
			byOff := map[int64]*kgo.Record{}
			for _, r := range exp {
				byOff[r.Offset] = r
			}
			lastPerKey := map[string]int64{}
			for _, r := range exp {
				lastPerKey[string(r.Key)] = r.Offset
			}
			seen := map[int64]bool{}
			for _, r := range g {
				w, ok := byOff[r.Offset]
				if !ok {
					t.Errorf("%s: restored offset %d was never produced", k, r.Offset)
					continue
				}
				if err := sameRecord(r, w); err != nil {
					t.Errorf("%s: %v", k, err)
				}
				seen[r.Offset] = true
			}
			for key, off := range lastPerKey {
				if !seen[off] {
					t.Errorf("%s: the last record of key %q (offset %d) is missing", k, key, off)
				}
			}
			n += len(g)
			continue
		}
		if len(g) != len(exp) {
			t.Errorf("%s (partition %d): consumed %d records, want %d (produced up to offset %d)", k, part, len(g), len(exp), lim)
		}
		for i := 0; i < len(g) && i < len(exp); i++ {
			if err := sameRecord(g[i], exp[i]); err != nil {
				t.Errorf("%s: %v", k, err)
				break
			}
		}
		n += len(g)
	}
	return n
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// TestRealKafka archives a live Apache Kafka 4.4 broker with the agent,
// then boots real brokers on what restore writes.
func TestRealKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka")
	}
	runRealKafka(t, kafkatest.DefaultVersion)
}

func runRealKafka(t *testing.T, version string) {
	ctx := context.Background()
	props := kafkatest.DefaultProps(version)
	props["log.roll.ms"] = "2500"                     // every topic (internal ones too) rolls on the next append after 2.5s
	props["log.retention.check.interval.ms"] = "1000" // retention runs during the test
	props["log.cleaner.backoff.ms"] = "500"           // and so does the cleaner
	props["log.cleaner.min.compaction.lag.ms"] = "0"  //
	props["metadata.log.segment.ms"] = "2000"         // the KRaft metadata log rolls too
	props["metadata.max.idle.interval.ms"] = "300"    // (NoOp records keep it moving)
	props["metadata.log.max.snapshot.interval.ms"] = "3000"
	props["log.flush.start.offset.checkpoint.interval.ms"] = "1000"
	props["transaction.abort.timed.out.transaction.cleanup.interval.ms"] = "1000"
	src := kafkatest.Start(t, kafkatest.Options{Version: version, SegmentBytes: 16 << 10, Props: props})
	compacted := map[string]bool{"kv": true}
	src.CreateTopic(t, "plain", 3, map[string]string{"retention.bytes": "60000"}) // Kafka's retention deletes segments
	src.CreateTopic(t, "kv", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
	src.CreateTopic(t, "txn", 2, nil)
	src.CreateTopic(t, "pit", 1, nil)

	srv := miniotest.Start(t)
	b := s3Bucket(t, srv)
	metrics := agent.NewMetrics(nil)
	a := newAgent(t, b, agent.Config{LogDirs: []string{src.LogDir()}, ScanInterval: 300 * time.Millisecond,
		SettleTime: 200 * time.Millisecond, StagingBudget: 1 << 30}, metrics)
	actx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx, nil) }()
	t.Cleanup(stopAgent)

	// Watch the disk: every version Kafka rolls, before retention or the cleaner removes it.
	rolled := map[string]map[string]bool{}
	lastSeen := map[string]string{}
	var rmu sync.Mutex
	var watch diskWatch
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for watchCtx.Err() == nil {
			rmu.Lock()
			watch.pass(src.LogDir(), rolled, lastSeen)
			rmu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	want := &produced{records: map[string][]*kgo.Record{}}
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	var clients []*kgo.Client
	for _, c := range codecs {
		clients = append(clients, src.Client(t, kgo.ProducerBatchCompression(c), kgo.ProducerLinger(5*time.Millisecond)))
	}
	txc := src.Client(t, kgo.TransactionalID("segvault-e2e"), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	value := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"id":%d,"user":"user-%d","amount":%d.%02d,"note":"segvault end-to-end test record"}`, i, i%97, i%1000, i%100))
	}
	produce := func(cl *kgo.Client, topic string, n, base int, keys int) {
		var rs []*kgo.Record
		for i := 0; i < n; i++ {
			r := &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa((base+i)%keys)), Value: value(base + i),
				Headers: []kgo.RecordHeader{{Key: "seq", Value: []byte(strconv.Itoa(base + i))}}}
			rs = append(rs, r)
		}
		res := cl.ProduceSync(ctx, rs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", topic, err)
		}
		for _, r := range rs {
			want.add(r)
		}
	}
	// A consumer group commits offsets before the archive is taken.
	group := src.Client(t, kgo.ConsumerGroup("segvault-e2e-group"), kgo.ConsumeTopics("plain"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	deadline := time.Now().Add(14 * time.Second)
	for round := 0; time.Now().Before(deadline); round++ {
		cl := clients[round%len(clients)]
		produce(cl, "plain", 120, round*120, 1<<30)
		produce(cl, "kv", 60, round*60, 40)
		// One record per batch, so point-in-time cuts can be exact.
		for i := 0; i < 5; i++ {
			produce(clients[0], "pit", 1, round*5+i, 1<<30)
		}
		if err := txc.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var txRecs []*kgo.Record
		for i := 0; i < 40; i++ {
			txRecs = append(txRecs, &kgo.Record{Topic: "txn", Key: []byte("t" + strconv.Itoa(i)), Value: value(round*40 + i)})
		}
		if err := txc.ProduceSync(ctx, txRecs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		commit := round%3 != 2
		if err := txc.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		if commit {
			for _, r := range txRecs {
				want.add(r)
			}
		}
		if round == 3 {
			fs := group.PollRecords(ctx, 200)
			if fs.NumRecords() == 0 {
				t.Fatal("group consumer got nothing")
			}
			if err := group.CommitUncommittedOffsets(ctx); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	committed, err := kadm.NewClient(group).FetchOffsets(ctx, "segvault-e2e-group")
	if err != nil {
		t.Fatal(err)
	}
	committedAt := time.Now()
	// Let log.roll.ms pass, then one sentinel append per partition rolls
	// every segment that holds the data above (and __consumer_offsets').
	time.Sleep(3 * time.Second)
	for _, topic := range []string{"plain", "kv", "txn", "pit"} {
		for p := int32(0); p < 3; p++ {
			r := &kgo.Record{Topic: topic, Partition: p, Value: []byte("sentinel")}
			clients[0].ProduceSync(ctx, r) // partitions that do not exist just fail
		}
	}
	// The member commits the same offsets again: an append that rolls
	// __consumer_offsets, so the earlier commit is in a rolled segment.
	var commitErr error
	group.CommitOffsetsSync(ctx, group.CommittedOffsets(), func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
	})
	if commitErr != nil {
		t.Fatal(commitErr)
	}
	// That append rolls __consumer_offsets only if log.roll.ms has passed
	// since its active segment's first record, which under load is not
	// certain: commit again (each commit is an append) until Kafka has rolled
	// the segment holding the commit, so the whole-broker check below finds
	// the group's offsets archived.
	offsetsRolled := func() bool {
		rmu.Lock()
		defer rmu.Unlock()
		for k := range rolled {
			if strings.HasPrefix(k, "__consumer_offsets/") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(45 * time.Second); !offsetsRolled(); {
		if time.Now().After(deadline) {
			t.Fatal("Kafka did not roll __consumer_offsets after repeated offset commits")
		}
		time.Sleep(3 * time.Second) // > log.roll.ms
		group.CommitOffsetsSync(ctx, group.CommittedOffsets(), func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			commitErr = err
		})
		if commitErr != nil {
			t.Fatal(commitErr)
		}
	}

	// Wait until every version Kafka rolled is archived.
	var missing []string
	defer func() {
		if t.Failed() {
			t.Logf("not archived: %v", missing)
		}
	}()
	waitFor(t, 3*time.Minute, func() bool {
		rmu.Lock()
		defer rmu.Unlock()
		got := archivedByBase(t, b)
		missing = missing[:0]
		for k, vs := range rolled {
			if isCompacted(k) {
				// The cleaner may replace a version before it is uploaded
				// (its surviving records are in the replacement): the last
				// version of every base still on disk must be archived.
				if v := lastSeen[k]; !got[k][v] && onDisk(src.LogDir(), k) {
					missing = append(missing, k+"@"+v)
				}
				continue
			}
			for v := range vs {
				if !got[k][v] {
					missing = append(missing, k+"@"+v)
				}
			}
		}
		return len(missing) == 0
	})
	stopWatch()
	<-watchDone
	stopAgent()
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	// Exactly once, never the active segment: every archived version was a
	// rolled one on disk; nothing was lost to Kafka's retention.
	got := archivedByBase(t, b)
	for k, vs := range got {
		for v := range vs {
			if !rolled[k][v] {
				var what string
				for _, m := range manifests(t, b) {
					if m.Kind == archive.KindSegment && fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.BaseOffset) == k && m.ContentID == v {
						what = fmt.Sprintf("offsets %d..%d, %d bytes, %d batches", m.Summary.FirstOffset, m.Summary.LastOffset, m.Summary.Size, m.Summary.Batches)
					}
				}
				t.Errorf("%s: archived version %s (%s) was never a rolled segment (archived while active?); versions seen on disk: %v", k, v, what, rolled[k])
			}
		}
	}
	if lost := readCounter(metrics.SegmentsLost); lost != 0 {
		t.Errorf("%v segments lost", lost)
	}
	nVersions := 0
	for _, vs := range rolled {
		nVersions += len(vs)
	}
	t.Logf("Kafka %s rolled %d segment versions (retention and cleaner included); all archived exactly once", version, nVersions)
	// Compacted topics: the cleaner may replace a version before it is
	// uploaded, so between the required versions and all rolled ones.
	required := 0
	for k, vs := range rolled {
		if isCompacted(k) {
			if onDisk(src.LogDir(), k) {
				required++
			}
			continue
		}
		required += len(vs)
	}
	nCommitted := 0 // segment manifests (the metric also counts KRaft .checkpoint snapshots)
	for _, vs := range got {
		nCommitted += len(vs)
	}
	if nCommitted < required || nCommitted > nVersions {
		t.Errorf("agent committed %d segment versions, want between %d and %d", nCommitted, required, nVersions)
	}
	scrubAll(t, b)
	limit := lastArchived(t, b)
	origCluster, origNode := src.ClusterID, src.NodeID
	if err := src.Stop(); err != nil {
		t.Fatal(err)
	}
	dataTopics := []string{"plain", "kv", "txn", "pit"}

	t.Run("whole-broker", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "restored")
		// Rolled segments only: the check is against the last archived
		// rolled segment (tail captures: TestH26BoundedRPO).
		restoreAll(t, b, restore.Selection{Broker: origNode, Metadata: true, RolledOnly: true}, restore.Options{Targets: []string{dst}})
		checkDumpLog(t, version, dst)
		br := kafkatest.Start(t, kafkatest.Options{Version: version, LogDir: dst, SkipFormat: true, Props: props})
		if br.ClusterID != origCluster {
			t.Fatalf("restored cluster id %s, want %s", br.ClusterID, origCluster)
		}
		n := checkRecords(t, consumeAll(t, br, dataTopics...), want, limit, compacted, dataTopics...)
		// Consumer-group offsets committed before the archive are still there.
		offs, err := br.Admin(t).FetchOffsets(ctx, "segvault-e2e-group")
		if err != nil {
			t.Fatal(err)
		}
		committed.Offsets().Each(func(o kadm.Offset) {
			r, ok := offs.Lookup(o.Topic, o.Partition)
			if !ok || r.At != o.At {
				t.Errorf("group offset %s/%d: restored %v (found %v, err %v), committed %d", o.Topic, o.Partition, r.At, ok, r.Err, o.At)
			}
		})
		if t.Failed() {
			for _, m := range manifests(t, b) {
				if m.Topic == "__consumer_offsets" {
					t.Logf("archived __consumer_offsets-%d base %d..%d next %d records %d", m.Partition, m.BaseOffset, m.Summary.LastOffset, m.NextSegmentBase, m.Summary.Records)
				}
			}
			ents, _ := os.ReadDir(filepath.Join(dst, "__consumer_offsets-0"))
			for _, e := range ents {
				fi, _ := e.Info()
				t.Logf("restored __consumer_offsets-0/%s %d bytes", e.Name(), fi.Size())
			}
			t.Logf("original committed at: %v", committedAt)
		}
		t.Logf("whole-broker restore: %d records served at their original offsets", n)
	})

	t.Run("new-cluster-topic-ids", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "fresh")
		fresh := kafkatest.Start(t, kafkatest.Options{Version: version, LogDir: dir, Props: props})
		ids := map[string]string{}
		for _, tp := range []struct {
			name string
			n    int32
			cfg  map[string]string
		}{{"plain", 3, nil}, {"kv", 1, map[string]string{"cleanup.policy": "compact"}}, {"txn", 2, nil}, {"pit", 1, nil}} {
			fresh.CreateTopic(t, tp.name, tp.n, tp.cfg)
		}
		det, err := fresh.Admin(t).ListTopics(ctx, dataTopics...)
		if err != nil {
			t.Fatal(err)
		}
		var idArgs []string
		for _, d := range det {
			id := base64.RawURLEncoding.EncodeToString(d.ID[:]) // Kafka's Uuid.toString
			ids[d.Topic] = id
			idArgs = append(idArgs, d.Topic+"="+id)
		}
		if err := fresh.Stop(); err != nil {
			t.Fatal(err)
		}
		restoreAll(t, b, restore.Selection{Broker: -1, Topics: mustRe("^(plain|kv|txn|pit)$"), RolledOnly: true},
			restore.Options{Targets: []string{dir}, TopicIDs: ids, Force: true, IntoOtherCluster: true})
		br := kafkatest.Start(t, kafkatest.Options{Version: version, LogDir: dir, SkipFormat: true, Props: props})
		n := checkRecords(t, consumeAll(t, br, dataTopics...), want, limit, compacted, dataTopics...)
		t.Logf("restore into a new cluster with re-created topics (%v): %d records", idArgs, n)
	})

	pit := want.records["pit/0"]
	sort.Slice(pit, func(i, j int) bool { return pit[i].Offset < pit[j].Offset })
	t.Run("to-offset", func(t *testing.T) {
		cut := pit[len(pit)/2].Offset
		dst := filepath.Join(t.TempDir(), "pit-offset")
		restoreAll(t, b, restore.Selection{Broker: origNode, Metadata: true}, restore.Options{Targets: []string{dst}, ToOffset: cut})
		h40SnapshotsWithinLog(t, filepath.Join(dst, "__cluster_metadata-0"))
		br := kafkatest.Start(t, kafkatest.Options{Version: version, LogDir: dst, SkipFormat: true, Props: props})
		lim := map[string]int64{"pit/0": cut}
		n := checkRecords(t, consumeAll(t, br, "pit"), want, lim, nil, "pit")
		t.Logf("--to-offset %d: %d records", cut, n)
	})
	t.Run("to-time", func(t *testing.T) {
		at := pit[len(pit)/3]
		dst := filepath.Join(t.TempDir(), "pit-time")
		restoreAll(t, b, restore.Selection{Broker: origNode, Metadata: true}, restore.Options{Targets: []string{dst}, ToTime: at.Timestamp.UnixMilli()})
		h40SnapshotsWithinLog(t, filepath.Join(dst, "__cluster_metadata-0"))
		br := kafkatest.Start(t, kafkatest.Options{Version: version, LogDir: dst, SkipFormat: true, Props: props})
		// Records (one per batch) up to the last one at or before the time.
		var last int64 = -1
		for _, r := range pit {
			if r.Timestamp.UnixMilli() > at.Timestamp.UnixMilli() {
				break
			}
			last = r.Offset
		}
		n := checkRecords(t, consumeAll(t, br, "pit"), want, map[string]int64{"pit/0": last}, nil, "pit")
		t.Logf("--to-time %s: %d records (last offset %d)", at.Timestamp.UTC().Format(time.RFC3339Nano), n, last)
	})
}

// isCompacted: "topic/partition/base" of a compacted topic of the test.
func isCompacted(k string) bool {
	for _, p := range []string{"kv/", "__consumer_offsets/", "__transaction_state/"} {
		if len(k) > len(p) && k[:len(p)] == p {
			return true
		}
	}
	return false
}

// onDisk reports whether the segment "topic/partition/base" still exists.
func onDisk(logDir, k string) bool {
	var topic string
	var part int
	var base int64
	i := len(k) - 1
	for k[i] != '/' {
		i--
	}
	base, _ = strconv.ParseInt(k[i+1:], 10, 64)
	j := i - 1
	for k[j] != '/' {
		j--
	}
	topic, part = k[:j], atoi(k[j+1:i])
	_, err := os.Stat(filepath.Join(logDir, fmt.Sprintf("%s-%d", topic, part), segment.FormatName(base, segment.KindLog)))
	return err == nil
}

// checkDumpLog runs Kafka's own DumpLogSegments --deep-iteration over every
// restored segment and fails on any invalid batch.
func checkDumpLog(t *testing.T, version, dir string) {
	t.Helper()
	var files []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Ext(p) == ".log" && fi.Size() > 0 {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatal("no restored segments")
	}
	// Compacted and transactional logs legitimately have offset gaps.
	probs := kafkatest.CheckSegments(t, version, files, kafkatest.ProblemNonConsecutive)
	for _, p := range probs {
		t.Errorf("DumpLogSegments: %s: %s: %s", p.File, p.Kind, p.Line)
	}
	t.Logf("DumpLogSegments --deep-iteration: %d restored segments, %d problems", len(files), len(probs))
}

// TestRealKafka39 runs the same on the second line, Apache Kafka 3.9.
func TestRealKafka39(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka")
	}
	runRealKafka(t, kafkatest.SecondVersion)
}

// h40SnapshotsWithinLog fails when a restored metadata log dir holds a KRaft
// snapshot past the end of its log: a broker hung at start on one (a
// --to-offset restore cut the metadata log at a data partition's offset and
// kept the newer snapshots).
func h40SnapshotsWithinLog(t *testing.T, dir string) {
	t.Helper()
	files, err := kafkatest.SegmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	end := int64(0)
	for _, f := range files {
		n, _ := segment.ParseFileName(filepath.Base(f))
		end = max(end, n.BaseOffset)
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := fh.Stat()
		r := segment.NewReader(fh, fi.Size(), f, segment.ReaderOptions{BaseOffset: n.BaseOffset})
		for r.Next() {
			b := r.Batch()
			end = max(end, b.BaseOffset+int64(b.LastOffsetDelta)+1)
		}
		fh.Close()
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindCheckpoint && n.BaseOffset > end {
			t.Errorf("%s: KRaft snapshot %s is past the restored log's end %d", dir, e.Name(), end)
		}
	}
}
