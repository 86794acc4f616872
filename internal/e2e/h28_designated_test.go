package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

const h28Topic = "h28-events"

// h28Rolled returns a replica's rolled segments of topic-p (all but the
// active one) as [base, next base) ranges and their total .log bytes.
func h28Rolled(t *testing.T, dir string, p int32) ([]agent.OffsetRange, int64) {
	t.Helper()
	files, err := kafkatest.SegmentFiles(filepath.Join(dir, fmt.Sprintf("%s-%d", h28Topic, p)))
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	var sizes []int64
	for _, f := range files {
		b, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(f), ".log"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		bases, sizes = append(bases, b), append(sizes, fi.Size())
	}
	var out []agent.OffsetRange
	var bytes int64
	for i := 0; i+1 < len(bases); i++ {
		out = append(out, agent.OffsetRange{Start: bases[i], End: bases[i+1]})
		bytes += sizes[i]
	}
	return out, bytes
}

// h28Coverage returns, per partition, the archived ranges merged, and the
// archived .log bytes per broker.
func h28Coverage(t *testing.T, b uploader.Bucket) (map[int32][]agent.OffsetRange, map[int32]int64) {
	t.Helper()
	ranges := map[int32][]agent.OffsetRange{}
	bytes := map[int32]int64{}
	for _, m := range manifests(t, b) {
		if m.Topic != h28Topic {
			continue
		}
		ranges[m.Partition] = append(ranges[m.Partition], agent.OffsetRange{Start: m.BaseOffset, End: m.NextSegmentBase})
		if f, ok := m.LogFile(); ok {
			bytes[m.BrokerID] += f.Size
		}
	}
	for p, r := range ranges {
		sort.Slice(r, func(i, j int) bool { return r[i].Start < r[j].Start })
		var merged []agent.OffsetRange
		for _, x := range r {
			if n := len(merged); n > 0 && x.Start <= merged[n-1].End {
				merged[n-1].End = max(merged[n-1].End, x.End)
				continue
			}
			merged = append(merged, x)
		}
		ranges[p] = merged
	}
	return ranges, bytes
}

// h28Covers reports whether merged covers every rolled range.
func h28Covers(merged []agent.OffsetRange, rolled []agent.OffsetRange) bool {
	for _, r := range rolled {
		ok := false
		for _, m := range merged {
			if m.Start <= r.Start && m.End >= r.End {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func h28Leaders(t *testing.T, adm *kadm.Client) map[int32]int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx, h28Topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int32{}
	for p, d := range td[h28Topic].Partitions {
		out[p] = d.Leader
	}
	return out
}

// Three real KRaft brokers, replication factor 3, an agent each with
// archive-replicas=designated: the archive holds one copy (<= 1.1x one
// replica's rolled bytes) covering every rolled offset; when a leader's
// agent is down a standby takes its partition over within the grace,
// without a gap; when a broker dies its partitions' new leaders archive
// them, again without a gap.
func TestH28ThreeBrokersDesignated(t *testing.T) {
	for _, v := range kafkatest.Versions {
		t.Run(v, func(t *testing.T) { h28ThreeBrokers(t, v) })
	}
}

func h28ThreeBrokers(t *testing.T, version string) {
	props := kafkatest.DefaultProps(version)
	props["offsets.topic.replication.factor"] = "3"
	props["default.replication.factor"] = "3"
	props["unclean.leader.election.enable"] = "false"
	brokers := kafkatest.StartCluster(t, 3, kafkatest.Options{Version: version, SegmentBytes: 16 << 10, Props: props,
		JavaOpts: append([]string{"-Xmx320m"}, kafkatest.DefaultJavaOpts[1:]...)})
	ctx := context.Background()
	adm := kadm.NewClient(brokers[0].Client(t))
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(cctx, 3, 3, map[string]*string{
		kafkatest.TopicSegmentBytesKey(version, 16<<10): kadm.StringPtr(strconv.Itoa(16 << 10)),
		"min.insync.replicas":                           kadm.StringPtr("1")}, h28Topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, b := range brokers {
		seeds = append(seeds, b.Addr())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(2*time.Millisecond), kgo.ProducerBatchMaxBytes(8<<10), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seq := 0
	produce := func(n int) {
		t.Helper()
		var rs []*kgo.Record
		for range n {
			rs = append(rs, &kgo.Record{Topic: h28Topic, Key: []byte("k" + strconv.Itoa(seq%97)),
				Value: []byte(fmt.Sprintf(`{"seq":%d,"note":"segvault issue 16: one archived copy per partition"}`, seq))})
			seq++
		}
		pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := cl.ProduceSync(pctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	srv := miniotest.Start(t)
	b := s3Bucket(t, srv)
	const settle, scan = 200 * time.Millisecond, 300 * time.Millisecond
	grace := agent.TakeoverGrace(settle, scan)
	agents := map[int32]*agent.Agent{}
	for _, br := range brokers {
		agents[br.NodeID] = newAgent(t, b, agent.Config{LogDirs: []string{br.LogDir()}, IncludeTopics: []string{h28Topic},
			ScanInterval: scan, SettleTime: settle, ArchiveReplicas: agent.ArchiveReplicasDesignated, ClaimTTL: 15 * time.Minute}, nil)
	}
	runAll := func(ids ...int32) {
		t.Helper()
		for _, id := range ids {
			if _, err := agents[id].RunOnce(ctx); err != nil {
				t.Fatalf("agent %d: %v", id, err)
			}
		}
	}
	check := func(stage string, replicas []int32) map[int32]int64 {
		t.Helper()
		cov, perBroker := h28Coverage(t, b)
		for p := int32(0); p < 3; p++ {
			for _, id := range replicas {
				rolled, _ := h28Rolled(t, brokers[id-1].LogDir(), p)
				if !h28Covers(cov[p], rolled) {
					t.Fatalf("%s: p%d: archive %v does not cover broker %d's rolled %v", stage, p, cov[p], id, rolled)
				}
			}
		}
		return perBroker
	}

	// 1. Everyone up: one copy.
	produce(4000)
	time.Sleep(2 * settle)
	runAll(1, 2, 3)
	perBroker := check("all up", []int32{1, 2, 3})
	var archived, oneReplica int64
	for _, n := range perBroker {
		archived += n
	}
	for p := int32(0); p < 3; p++ {
		_, n := h28Rolled(t, brokers[0].LogDir(), p)
		oneReplica += n
	}
	ratio := float64(archived) / float64(oneReplica)
	t.Logf("all up: archived %d .log bytes (per broker %v), one replica rolled %d: ratio %.3f", archived, perBroker, oneReplica, ratio)
	if ratio > 1.1 || oneReplica == 0 {
		t.Fatalf("ratio %.3f > 1.1", ratio)
	}

	// 2. The agent of p0's leader stops (its broker keeps running): a
	// standby takes over within the grace.
	leaders := h28Leaders(t, adm)
	down := leaders[0]
	var up []int32
	for id := int32(1); id <= 3; id++ {
		if id != down {
			up = append(up, id)
		}
	}
	before, _ := h28Coverage(t, b)
	end0 := before[0][len(before[0])-1].End
	produce(3000)
	start := time.Now()
	deadline := start.Add(grace + 10*time.Second)
	for {
		time.Sleep(scan)
		runAll(up...)
		cov, _ := h28Coverage(t, b)
		rolled, _ := h28Rolled(t, brokers[up[0]-1].LogDir(), 0)
		if h28Covers(cov[0], rolled) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent of broker %d down: p0 not taken over after %v: archive %v, rolled %v", down, time.Since(start), cov[0], rolled)
		}
	}
	t.Logf("agent of broker %d (leader of p0) down: taken over in %v (grace %v)", down, time.Since(start).Round(10*time.Millisecond), grace)
	taken := 0
	for _, m := range manifests(t, b) {
		if m.Topic == h28Topic && m.Partition == 0 && m.BaseOffset >= end0 {
			if m.BrokerID == down {
				t.Fatalf("p0 [%d, %d) archived by broker %d whose agent is down", m.BaseOffset, m.NextSegmentBase, m.BrokerID)
			}
			taken++
		}
	}
	if taken == 0 {
		t.Fatalf("no p0 segment rolled after offset %d: nothing was taken over", end0)
	}
	t.Logf("%d p0 segments taken over", taken)
	check("agent down", up)

	// 3. A broker dies (and its agent with it): the new leaders archive.
	var dead int32
	for p := int32(1); p < 3; p++ {
		if leaders[p] != down {
			dead = leaders[p]
		}
	}
	if dead == 0 {
		dead = up[0]
	}
	atKill, _ := h28Coverage(t, b)
	brokers[dead-1].Kill()
	var alive []int32
	for id := int32(1); id <= 3; id++ {
		if id != dead {
			alive = append(alive, id)
		}
	}
	produce(3000)
	start = time.Now()
	deadline = start.Add(grace + 20*time.Second)
	for {
		time.Sleep(scan)
		runAll(alive...)
		cov, _ := h28Coverage(t, b)
		ok := true
		for p := int32(0); p < 3; p++ {
			for _, id := range alive {
				rolled, _ := h28Rolled(t, brokers[id-1].LogDir(), p)
				ok = ok && h28Covers(cov[p], rolled)
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker %d dead: archive does not cover the survivors' rolled data after %v", dead, time.Since(start))
		}
	}
	t.Logf("broker %d killed: its partitions covered %v later", dead, time.Since(start).Round(10*time.Millisecond))
	final, _ := h28Coverage(t, b)
	for p := int32(0); p < 3; p++ {
		if len(final[p]) != 1 || final[p][0].End <= atKill[p][len(atKill[p])-1].End {
			t.Fatalf("p%d: archive %v did not grow past %v after broker %d died", p, final[p], atKill[p], dead)
		}
	}
	perBroker = check("broker dead", alive)
	archived, oneReplica = 0, 0
	for _, n := range perBroker {
		archived += n
	}
	for p := int32(0); p < 3; p++ {
		_, n := h28Rolled(t, brokers[alive[0]-1].LogDir(), p)
		oneReplica += n
	}
	t.Logf("end: archived %d .log bytes (per broker %v), one surviving replica rolled %d: ratio %.3f",
		archived, perBroker, oneReplica, float64(archived)/float64(oneReplica))
	if r := float64(archived) / float64(oneReplica); r > 1.15 {
		t.Fatalf("final ratio %.3f > 1.15", r)
	}

	// 4. Every broker restores completely: each record the archive covers
	// comes back at its original offset, as that broker's own disk holds it.
	for id := int32(1); id <= 3; id++ {
		dst := t.TempDir()
		rrep := restoreAll(t, b, restore.Selection{Broker: id, Topics: mustRe("^" + h28Topic + "$")}, restore.Options{Targets: []string{dst}})
		t.Logf("restore broker %d: %+v", id, *rrep)
		for p := int32(0); p < 3; p++ {
			end := final[p][0].End
			got := h28Records(t, filepath.Join(dst, fmt.Sprintf("%s-%d", h28Topic, p)), end)
			own := h28Records(t, brokers[id-1].PartitionDir(h28Topic, p), end)
			if int64(len(got)) != end {
				for _, m := range manifests(t, b) {
					if m.Topic == h28Topic && m.Partition == p {
						t.Logf("p%d: [%d, %d) broker %d", p, m.BaseOffset, m.NextSegmentBase, m.BrokerID)
					}
				}
				t.Fatalf("broker %d p%d: restored %d records, want offsets [0, %d)", id, p, len(got), end)
			}
			for off, v := range own {
				if got[off] != v {
					t.Fatalf("broker %d p%d offset %d: restored %q, the broker's own log has %q", id, p, off, got[off], v)
				}
			}
			t.Logf("broker %d p%d: %d records restored at their offsets (%d compared with its own log)", id, p, len(got), len(own))
		}
	}
}

// h28Records reads the records below end of a partition dir's .log files:
// offset -> value.
func h28Records(t *testing.T, dir string, end int64) map[int64]string {
	t.Helper()
	files, err := kafkatest.SegmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	for _, f := range files {
		base, _ := strconv.ParseInt(strings.TrimSuffix(filepath.Base(f), ".log"), 10, 64)
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := fh.Stat()
		r := segment.NewReader(fh, fi.Size(), f, segment.ReaderOptions{BaseOffset: base})
		for r.Next() {
			recs, err := r.Records()
			if err != nil {
				break
			}
			for _, rec := range recs {
				if rec.Offset < end {
					out[rec.Offset] = string(rec.Value)
				}
			}
		}
		fh.Close()
	}
	return out
}
