package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// Issue 16 end to end: a real 3-node KRaft cluster (replication factor 3), one segvault
// agent process per broker (own state dir, same bucket), real MinIO.

const (
	h30Topic      = "events"
	h30Partitions = 3
	h30Settle     = 200 * time.Millisecond
	h30Scan       = 300 * time.Millisecond
	// h30Grace is the takeover grace of the designated tests: longer than the default
	// (3 settle + 2 scan = 1.2s) so that a designated archiver merely slowed down by a
	// loaded 2-core machine is not taken over.
	h30Grace = 8 * time.Second
)

type h30Env struct {
	c      *kafkatest.Cluster
	props  map[string]string
	srv    *miniotest.Server
	bucket string
	b      uploader.Bucket
	extra  []string // extra agent flags
	agents map[int32]*h30Agent
	cl     *kgo.Client
	want   *produced
	seq    int
	// dirs, when set, are the log dirs the agents read instead of the
	// nodes' own (copies of a stopped cluster's, rewritten: h40).
	dirs map[int32]string
}

// dir is the log dir node n's agent reads.
func (e *h30Env) dir(n *kafkatest.Node) string {
	if d, ok := e.dirs[n.ID()]; ok {
		return d
	}
	return n.LogDir()
}

type h30Agent struct {
	node   int32
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	killed bool
}

// h30Props: the KRaft metadata log rolls (and snapshots) every few seconds, so that the
// agents archive metadata recent enough for a whole-cluster restore.
func h30Props() map[string]string {
	return map[string]string{
		"metadata.log.segment.ms":               "2000",
		"metadata.max.idle.interval.ms":         "300",
		"metadata.log.max.snapshot.interval.ms": "3000",
	}
}

// h30Start boots a cluster of the Kafka version ("" = default), MinIO, the topic and one
// agent per broker (flags extra).
func h30Start(t *testing.T, version string, extra ...string) *h30Env {
	t.Helper()
	e := &h30Env{props: h30Props(), extra: extra, agents: map[int32]*h30Agent{},
		want: &produced{records: map[string][]*kgo.Record{}}}
	e.c = kafkatest.StartCluster(t, kafkatest.ClusterOptions{Version: version, SegmentBytes: 16 << 10, Props: e.props})
	t.Logf("h30: 3-node Kafka %s cluster booted in %v", e.c.Version, e.c.BootTime.Round(time.Millisecond))
	e.c.CreateTopic(t, h30Topic, h30Partitions, nil)
	e.srv = miniotest.Start(t)
	e.bucket = e.srv.NewBucket(t)
	e.b = s3Bucket2(t, e.srv, e.bucket)
	for _, n := range e.c.Nodes() {
		e.startAgent(t, n)
	}
	e.cl = e.c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0))
	return e
}

func (e *h30Env) startAgent(t *testing.T, n *kafkatest.Node) {
	t.Helper()
	state := t.TempDir()
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("agent-%d.log", n.ID()))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"agent", "--log-dirs", e.dir(n), "--state-dir", state,
		"--settle-time", h30Settle.String(), "--scan-interval", h30Scan.String(), "--listen", ""},
		h4S3Flags(e.srv, "s3://"+e.bucket)...)
	args = append(args, e.extra...)
	cmd := exec.Command(segvaultBin(t), args...)
	cmd.Env = append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+e.srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+e.srv.SecretKey())
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	f.Close()
	a := &h30Agent{node: n.ID(), cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(a.done) }()
	e.agents[n.ID()] = a
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-a.done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-a.done
			}
		}
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "panic") {
			t.Errorf("agent of node %d panicked:\n%s", a.node, data)
		}
		if t.Failed() {
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("agent of node %d (last 40 lines of %s):\n%s", a.node, logPath, strings.Join(lines, "\n"))
		}
	})
}

// killAgent SIGKILLs the agent of a node.
func (e *h30Env) killAgent(node int32) {
	a := e.agents[node]
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	a.killed = true
}

// produce sends rounds of 30 incompressible 200-byte records per partition (acks=all) so that
// every replica rolls 16 KiB segments.
func (e *h30Env) produce(t *testing.T, rounds int) {
	t.Helper()
	ctx := context.Background()
	for range rounds {
		var rs []*kgo.Record
		for p := int32(0); p < h30Partitions; p++ {
			for range 30 {
				v := make([]byte, 100)
				rand.Read(v)
				rs = append(rs, &kgo.Record{Topic: h30Topic, Partition: p, Key: fmt.Appendf(nil, "k%d", e.seq),
					Value: []byte(hex.EncodeToString(v))})
				e.seq++
			}
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := e.cl.ProduceSync(pctx, rs...).FirstErr()
		cancel()
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		for _, r := range rs {
			e.want.add(r)
		}
	}
}

// h30Rolled is one replica's rolled state of one partition: [0, End) is in rolled segments.
type h30Rolled struct {
	End   int64 // base offset of the active segment
	Bytes int64 // .log bytes of the rolled segments
}

// rolled reads a node's partition dir: the rolled end and rolled bytes.
func h30RolledOf(t *testing.T, dir string) h30Rolled {
	t.Helper()
	files, err := kafkatest.SegmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var r h30Rolled
	for i, f := range files {
		n, ok := segment.ParseFileName(filepath.Base(f))
		if !ok {
			continue
		}
		if i == len(files)-1 {
			r.End = n.BaseOffset
			break
		}
		if st, err := os.Stat(f); err == nil {
			r.Bytes += st.Size()
		}
	}
	return r
}

// rolledAll returns node -> partition -> rolled state of the topic.
func (e *h30Env) rolledAll(t *testing.T, topic string, parts int32) map[int32]map[int32]h30Rolled {
	out := map[int32]map[int32]h30Rolled{}
	for _, n := range e.c.Nodes() {
		out[n.ID()] = map[int32]h30Rolled{}
		for p := int32(0); p < parts; p++ {
			out[n.ID()][p] = h30RolledOf(t, filepath.Join(e.dir(n), fmt.Sprintf("%s-%d", topic, p)))
		}
	}
	return out
}

// h30Coverage is the archive's view of one topic: per partition the segment ranges
// [base, next) archived, by any broker (broker -1) and by each broker.
type h30Coverage struct {
	ranges map[int32]map[int32][][2]int64 // broker -> partition -> ranges
	bytes  int64                          // .log bytes archived (raw), all brokers
	copies map[int32]int                  // broker -> segment manifests
}

func (e *h30Env) coverage(t *testing.T, topic string) h30Coverage {
	cv := h30Coverage{ranges: map[int32]map[int32][][2]int64{}, copies: map[int32]int{}}
	for _, m := range manifests(t, e.b) {
		if m.Kind != archive.KindSegment || m.Topic != topic {
			continue
		}
		for _, br := range []int32{-1, m.BrokerID} {
			if cv.ranges[br] == nil {
				cv.ranges[br] = map[int32][][2]int64{}
			}
			cv.ranges[br][m.Partition] = append(cv.ranges[br][m.Partition], [2]int64{m.BaseOffset, m.NextSegmentBase})
		}
		cv.copies[m.BrokerID]++
		if f, ok := m.LogFile(); ok {
			cv.bytes += f.Size
		}
	}
	return cv
}

// end is the end of the gap-free archived prefix [0, end) of a partition (broker -1: any).
func (cv h30Coverage) end(broker, partition int32) int64 {
	rs := append([][2]int64(nil), cv.ranges[broker][partition]...)
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var end int64
	for _, r := range rs {
		if r[0] > end {
			break // a gap
		}
		end = max(end, r[1])
	}
	return end
}

// gaps lists holes between archived ranges of a partition below limit (broker -1: any).
func (cv h30Coverage) gaps(broker, partition int32, limit int64) []string {
	rs := append([][2]int64(nil), cv.ranges[broker][partition]...)
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out []string
	var end int64
	for _, r := range rs {
		if r[0] > end && end < limit {
			out = append(out, fmt.Sprintf("[%d,%d)", end, min(r[0], limit)))
		}
		end = max(end, r[1])
	}
	if end < limit {
		out = append(out, fmt.Sprintf("[%d,%d)", end, limit))
	}
	return out
}

// waitArchived waits until cond holds on the archive's coverage of the topic and returns
// how long that took.
func (e *h30Env) waitArchived(t *testing.T, d time.Duration, what string, cond func(cv h30Coverage) error) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for {
		last = cond(e.coverage(t, h30Topic))
		if last == nil {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v: %v", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// h30EveryReplica: every broker archived all its own rolled segments (today's agent).
func h30EveryReplica(rolled map[int32]map[int32]h30Rolled) func(h30Coverage) error {
	return func(cv h30Coverage) error {
		for node, ps := range rolled {
			for p, r := range ps {
				if got := cv.end(node, p); got < r.End {
					return fmt.Errorf("node %d partition %d: archived [0,%d) of its rolled [0,%d)", node, p, got, r.End)
				}
			}
		}
		return nil
	}
}

// h30AnyReplica: the archive (any broker) covers each partition's rolled data on the given
// nodes without a gap.
func h30AnyReplica(rolled map[int32]map[int32]h30Rolled, nodes ...int32) func(h30Coverage) error {
	return func(cv h30Coverage) error {
		for _, node := range nodes {
			for p, r := range rolled[node] {
				if got := cv.end(-1, p); got < r.End {
					return fmt.Errorf("partition %d: archived [0,%d) without a gap, node %d rolled [0,%d)", p, got, node, r.End)
				}
			}
		}
		return nil
	}
}

// ratio is archived .log bytes of the topic over one replica's rolled bytes (per partition
// the replica that rolled the most).
func h30Ratio(cv h30Coverage, rolled map[int32]map[int32]h30Rolled) (float64, int64) {
	var one int64
	for p := int32(0); p < h30Partitions; p++ {
		var best int64
		for _, ps := range rolled {
			best = max(best, ps[p].Bytes)
		}
		one += best
	}
	if one == 0 {
		return 0, 0
	}
	return float64(cv.bytes) / float64(one), one
}

// TestH30ArchiveRatioAll measures what issue 16 is about: with archive-replicas=all (the
// default, every agent before issue 16) every replica of a replication-factor-3 topic is
// archived, about 3.0x one replica's bytes.
func TestH30ArchiveRatioAll(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka cluster")
	}
	start := time.Now()
	e := h30Start(t, "", "--archive-replicas", "all")
	e.produce(t, 25)
	rolled := e.rolledAll(t, h30Topic, h30Partitions)
	took := e.waitArchived(t, 2*time.Minute, "every replica archived", h30EveryReplica(rolled))
	cv := e.coverage(t, h30Topic)
	ratio, one := h30Ratio(cv, rolled)
	t.Logf("h30: archive-replicas=all: archived %d .log bytes for one replica's %d rolled bytes: ratio %.3f (copies per broker %v; archived %v after the last produce)",
		cv.bytes, one, ratio, cv.copies, took.Round(time.Millisecond))
	if ratio < 2.5 || ratio > 3.2 {
		t.Errorf("ratio %.3f, want about 3 with every replica archiving", ratio)
	}
	t.Logf("h30: test took %v", time.Since(start).Round(time.Millisecond))
}

// TestH30BrokerKillRestore SIGKILLs one broker while producing: the archive still covers
// every partition up to the survivors' rolled data with no gap (the partitions the dead
// broker led are archived from their new leaders), and restoring each broker from the
// bucket, then booting the three restored log dirs as a cluster, serves every record at its
// original offset.
func TestH30BrokerKillRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka cluster")
	}
	t.Run("all", func(t *testing.T) {
		start := time.Now()
		e := h30Start(t, "", "--archive-replicas", "all")
		h30KillRestore(t, e, h30EveryReplica)
		t.Logf("h30: test took %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("designated", func(t *testing.T) {
		start := time.Now()
		e := h30Start(t, "", "--archive-replicas", "designated", "--takeover-grace", h30Grace.String())
		h30KillRestore(t, e, func(rolled map[int32]map[int32]h30Rolled) func(h30Coverage) error {
			return h30AnyReplica(rolled, 1, 2, 3)
		})
		t.Logf("h30: test took %v", time.Since(start).Round(time.Millisecond))
	})
}

// h30KillRestore is the broker-kill scenario; before is the wait condition on what was
// archived before the kill.
func h30KillRestore(t *testing.T, e *h30Env, before func(map[int32]map[int32]h30Rolled) func(h30Coverage) error) {
	e.produce(t, 10)
	e.waitArchived(t, 2*time.Minute, "archived before the kill", before(e.rolledAll(t, h30Topic, h30Partitions)))
	// The victim leads at least one partition.
	var victim int32 = -1
	for _, p := range e.c.Partitions(t, h30Topic) {
		victim = p.Leader
	}
	led := 0
	for _, p := range e.c.Partitions(t, h30Topic) {
		if p.Leader == victim {
			led++
		}
	}
	e.c.Node(victim).Kill()
	killedAt := time.Now()
	var survivors []int32
	for _, n := range e.c.Nodes() {
		if n.ID() != victim {
			survivors = append(survivors, n.ID())
		}
	}
	t.Logf("h30: SIGKILLed broker %d (leader of %d partitions)", victim, led)
	// Its leaderships move and it leaves every ISR once its session expires.
	waitFor(t, time.Minute, func() bool {
		for _, p := range e.c.Partitions(t, h30Topic) {
			if p.Leader == victim || len(p.ISR) != 2 {
				return false
			}
		}
		return true
	})
	// Everything after this is in metadata segments the survivors roll later.
	metaActive := map[int32]int64{}
	for _, id := range survivors {
		metaActive[id] = h30RolledOf(t, e.c.Node(id).PartitionDir("__cluster_metadata", 0)).End
	}
	e.produce(t, 12)
	rolled := e.rolledAll(t, h30Topic, h30Partitions)
	took := e.waitArchived(t, 3*time.Minute, "survivors' rolled data archived", h30AnyReplica(rolled, survivors...))
	t.Logf("h30: after the broker kill, the survivors' rolled data was archived without a gap %v after the last produce (%v after the kill)",
		took.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
	cv := e.coverage(t, h30Topic)
	for p := int32(0); p < h30Partitions; p++ {
		lim := int64(0)
		for _, id := range survivors {
			lim = max(lim, rolled[id][p].End)
		}
		if g := cv.gaps(-1, p, lim); len(g) > 0 {
			t.Errorf("partition %d: archive gaps %v below the rolled end %d", p, g, lim)
		}
	}
	// The survivors' metadata past the ISR change is archived too.
	waitFor(t, 2*time.Minute, func() bool {
		ends := map[int32]int64{}
		for _, m := range manifests(t, e.b) {
			if m.Topic == "__cluster_metadata" && m.Kind == archive.KindSegment {
				ends[m.BrokerID] = max(ends[m.BrokerID], m.NextSegmentBase)
			}
		}
		for _, id := range survivors {
			if ends[id] <= metaActive[id] {
				return false
			}
		}
		return true
	})
	e.c.Stop() // the dead node stays dead; the others stop cleanly
	for _, a := range e.agents {
		if !a.killed {
			a.cmd.Process.Signal(syscall.SIGTERM)
			<-a.done
		}
	}
	scrubAll(t, e.b)
	final := e.coverage(t, h30Topic)
	ratio, one := h30Ratio(final, e.rolledAll(t, h30Topic, h30Partitions))
	t.Logf("h30: after the broker kill: archived %d .log bytes for one replica's %d rolled bytes: ratio %.3f (segment copies per broker %v)",
		final.bytes, one, ratio, final.copies)

	// Restore each broker, then boot the restored cluster.
	var dirs []string
	for _, n := range e.c.Nodes() {
		dst := filepath.Join(t.TempDir(), fmt.Sprintf("restored-%d", n.ID()))
		rstart := time.Now()
		rep := restoreAll(t, e.b, restore.Selection{Broker: n.ID(), Metadata: true}, restore.Options{Targets: []string{dst}})
		if len(rep.Gaps) > 0 {
			t.Errorf("restore of broker %d: gaps %v", n.ID(), rep.Gaps)
		}
		t.Logf("h30: restored broker %d: %d partitions, %d segments, %d bytes in %v", n.ID(), rep.Partitions, rep.Segments, rep.Bytes,
			time.Since(rstart).Round(time.Millisecond))
		// Each broker on its own: every archived offset of every partition is in its
		// restored log dir, with the produced key and value.
		for p := int32(0); p < h30Partitions; p++ {
			k := fmt.Sprintf("%s/%d", h30Topic, p)
			end := final.end(-1, p)
			got := h30ReadRecords(t, filepath.Join(dst, fmt.Sprintf("%s-%d", h30Topic, p)))
			exp := map[int64]*kgo.Record{}
			for _, r := range e.want.records[k] {
				exp[r.Offset] = r
			}
			var missing []int64
			for off := int64(0); off < end; off++ {
				r, ok := got[off]
				if !ok {
					missing = append(missing, off)
					continue
				}
				if w := exp[off]; w == nil || string(w.Key) != string(r.Key) || string(w.Value) != string(r.Value) {
					t.Errorf("restored broker %d %s offset %d: key %q differs from the produced record", n.ID(), k, off, r.Key)
					break
				}
			}
			if len(missing) > 0 {
				t.Errorf("restored broker %d %s: %d of the archived offsets [0,%d) missing (first %d, last %d)", n.ID(), k,
					len(missing), end, missing[0], missing[len(missing)-1])
			}
		}
		dirs = append(dirs, dst)
	}
	rc := kafkatest.StartCluster(t, kafkatest.ClusterOptions{Version: e.c.Version, LogDirs: dirs, SkipFormat: true, Props: e.props})
	if rc.ClusterID != e.c.ClusterID {
		t.Fatalf("restored cluster id %s, want %s", rc.ClusterID, e.c.ClusterID)
	}
	// Every record the archive covers comes back at its offset, from offset 0 on.
	floor := map[string]int64{}
	for p := int32(0); p < h30Partitions; p++ {
		floor[fmt.Sprintf("%s/%d", h30Topic, p)] = final.end(-1, p) - 1
	}
	got := h30ConsumeAll(t, rc, floor, h30Topic)
	n := 0
	for k, recs := range got {
		exp := map[int64]*kgo.Record{}
		for _, r := range e.want.records[k] {
			exp[r.Offset] = r
		}
		sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Errorf("%s: record %d has offset %d: offsets not contiguous from 0", k, i, r.Offset)
				break
			}
			w, ok := exp[r.Offset]
			if !ok {
				t.Errorf("%s: offset %d was never produced", k, r.Offset)
				break
			}
			if err := sameRecord(r, w); err != nil {
				t.Errorf("%s: %v", k, err)
				break
			}
		}
		if last := int64(len(recs)) - 1; last < floor[k] {
			t.Errorf("%s: restored cluster serves offsets up to %d, the archive covers up to %d", k, last, floor[k])
		}
		n += len(recs)
	}
	if len(got) != h30Partitions {
		t.Errorf("consumed %d partitions, want %d", len(got), h30Partitions)
	}
	t.Logf("h30: restored cluster (booted in %v) serves %d records at their original offsets (archive floors %v)",
		rc.BootTime.Round(time.Millisecond), n, floor)
}

// h30ConsumeAll reads topics from the start until every partition reached its floor
// offset and nothing more arrives.
func h30ConsumeAll(t *testing.T, c *kafkatest.Cluster, floor map[string]int64, topics ...string) map[string][]*kgo.Record {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string][]*kgo.Record{}
	var mu sync.Mutex
	reached := func() bool {
		for k, f := range floor {
			if int64(len(got[k]))-1 < f {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(2 * time.Minute)
	quiet := 0
	for time.Now().Before(deadline) && !(reached() && quiet >= 2) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			mu.Lock()
			k := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			got[k] = append(got[k], r)
			mu.Unlock()
			n++
		})
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return got
}

// h30ReadRecords reads every record of a partition dir's .log files: offset -> record.
func h30ReadRecords(t *testing.T, dir string) map[int64]segment.Record {
	t.Helper()
	files, err := kafkatest.SegmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]segment.Record{}
	for _, f := range files {
		n, ok := segment.ParseFileName(filepath.Base(f))
		if !ok {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := fh.Stat()
		if err != nil {
			t.Fatal(err)
		}
		r := segment.NewReader(fh, fi.Size(), f, segment.ReaderOptions{BaseOffset: n.BaseOffset})
		for r.Next() {
			recs, err := r.Records()
			if err != nil {
				t.Errorf("%s: %v", f, err)
				break
			}
			for _, rec := range recs {
				out[rec.Offset] = rec
			}
		}
		if err := r.Err(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		fh.Close()
	}
	return out
}
