package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// h40ClaimTTL is the claim TTL of the ZooKeeper-era test (at least 3 scan intervals).
const h40ClaimTTL = 3 * time.Second

// TestH40ZooKeeperEraClaims (issue 16, "the same with three brokers' log dirs written as a
// ZooKeeper-era cluster would be: bucket claims"): a real 3-node Kafka cluster writes a
// replication-factor-3 topic and stops; each broker's log dir is copied as a ZooKeeper-era
// broker holds it (no __cluster_metadata, meta.properties version 0 with broker.id, no
// bootstrap.checkpoint), so the agents can only agree through claim objects in the bucket
// (real MinIO, conditional writes). Broker 1's agent starts first, throttled, claims every
// partition and is SIGKILLed before it has archived them; the agents of brokers 2 and 3
// take the expired claims over and archive the rest with no gap; the archive holds at most
// 1.15x one replica's rolled bytes; every broker's restore brings back every rolled record
// at its original offset.
func TestH40ZooKeeperEraClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka cluster")
	}
	start := time.Now()
	e := &h30Env{props: h30Props(), agents: map[int32]*h30Agent{}, want: &produced{records: map[string][]*kgo.Record{}}}
	e.c = kafkatest.StartCluster(t, kafkatest.ClusterOptions{SegmentBytes: 16 << 10, Props: e.props})
	e.c.CreateTopic(t, h30Topic, h30Partitions, nil)
	e.cl = e.c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0))
	e.produce(t, 20)
	e.c.WaitISRFull(t, time.Minute, h30Topic)
	e.cl.Close()
	if err := e.c.Stop(); err != nil {
		t.Fatalf("stop the cluster: %v", err)
	}
	e.dirs = map[int32]string{}
	for _, n := range e.c.Nodes() {
		e.dirs[n.ID()] = h40ZooKeeperEraCopy(t, n)
	}
	rolled := e.rolledAll(t, h30Topic, h30Partitions)
	for p := int32(0); p < h30Partitions; p++ {
		if rolled[1][p].End == 0 || rolled[1][p] != rolled[2][p] || rolled[1][p] != rolled[3][p] {
			t.Fatalf("partition %d: replicas rolled %v, %v, %v: want the same rolled segments on every broker", p, rolled[1][p], rolled[2][p], rolled[3][p])
		}
	}

	e.srv = miniotest.Start(t)
	e.bucket = e.srv.NewBucket(t)
	e.b = s3Bucket2(t, e.srv, e.bucket)
	base := []string{"--archive-replicas", "designated", "--claim-ttl", h40ClaimTTL.String()}
	// Broker 1 first, at 4 KB/s: it claims every partition and archives slowly.
	e.extra = append(append([]string(nil), base...), "--upload-bandwidth", "4096")
	e.startAgent(t, e.c.Node(1))
	claims := h40WaitClaims(t, e.b, 30*time.Second, func(c map[int32]*archive.Claim) error {
		for p := int32(0); p < h30Partitions; p++ {
			if c[p] == nil || c[p].Broker != 1 {
				return fmt.Errorf("partition %d claimed by %v", p, c[p])
			}
		}
		return nil
	})
	// and captured its log dir's root files (what restore --broker 1 knows it held).
	h40WaitLogDirCapture(t, e.b, 1, 30*time.Second)
	e.killAgent(1)
	atKill := e.coverage(t, h30Topic)
	t.Logf("h40: broker 1's agent claimed %d partitions and was SIGKILLed having archived %d segments", len(claims), atKill.copies[1])
	if h30AnyReplica(rolled, 1)(atKill) == nil {
		t.Fatalf("broker 1's throttled agent archived everything before the kill: nothing left to take over")
	}

	e.extra = base
	e.startAgent(t, e.c.Node(2))
	e.startAgent(t, e.c.Node(3))
	took := e.waitArchived(t, 2*time.Minute, "brokers 2 and 3 take the claims over", h30AnyReplica(rolled, 1, 2, 3))
	claims = h40WaitClaims(t, e.b, 30*time.Second, func(c map[int32]*archive.Claim) error {
		for p := int32(0); p < h30Partitions; p++ {
			if c[p] == nil || c[p].Broker == 1 {
				return fmt.Errorf("partition %d still claimed by %v", p, c[p])
			}
		}
		return nil
	})
	for p, c := range claims {
		if c.TakenFrom != 1 {
			t.Errorf("partition %d: claim of broker %d taken from %d, want from broker 1", p, c.Broker, c.TakenFrom)
		}
	}
	// Standbys that would wrongly archive do so after the TTL: wait it out.
	time.Sleep(2 * h40ClaimTTL)
	cv := e.coverage(t, h30Topic)
	for p := int32(0); p < h30Partitions; p++ {
		if g := cv.gaps(-1, p, rolled[1][p].End); len(g) > 0 {
			t.Errorf("partition %d: archive gaps %v", p, g)
		}
	}
	ratio, one := h30Ratio(cv, rolled)
	t.Logf("h40: ZooKeeper-era layout, bucket claims: takeover covered every partition %v after the kill (claim TTL %v); archived %d .log bytes for one replica's %d: ratio %.3f (segment copies per broker %v)",
		took.Round(time.Millisecond), h40ClaimTTL, cv.bytes, one, ratio, cv.copies)
	if ratio > 1.15 {
		t.Errorf("ratio %.3f, want <= 1.15 with one claim owner per partition", ratio)
	}
	if ratio < 0.99 {
		t.Errorf("ratio %.3f < 1: rolled data missing", ratio)
	}
	for id, a := range e.agents {
		if data, err := os.ReadFile(a.log); err == nil && regexp.MustCompile(`level=ERROR`).Match(data) && id != 1 {
			t.Errorf("agent of broker %d logged an error:\n%s", id, h40Grep(string(data), "level=ERROR"))
		}
	}

	// Every broker restores completely: its partitions from the archive (its own copies
	// first, the other replicas' to fill the gaps), every rolled record at its offset.
	for _, n := range e.c.Nodes() {
		target := t.TempDir()
		rep := restoreAll(t, e.b, restore.Selection{Cluster: e.clusterID(t), Broker: n.ID(), Topics: regexp.MustCompile("^" + h30Topic + "$"), RolledOnly: true},
			restore.Options{Targets: []string{target}})
		for p := int32(0); p < h30Partitions; p++ {
			end := rolled[n.ID()][p].End
			want := h28Records(t, filepath.Join(e.dirs[n.ID()], fmt.Sprintf("%s-%d", h30Topic, p)), end)
			got := h28Records(t, filepath.Join(target, fmt.Sprintf("%s-%d", h30Topic, p)), end)
			if int64(len(want)) != end || len(got) != len(want) {
				t.Errorf("broker %d partition %d: restored %d records below %d, the replica holds %d", n.ID(), p, len(got), end, len(want))
				continue
			}
			for off, v := range want {
				if got[off] != v {
					t.Errorf("broker %d partition %d offset %d: restored %q, want %q", n.ID(), p, off, got[off], v)
					break
				}
			}
		}
		t.Logf("h40: restored broker %d: %d partitions, %d segments, %d bytes", n.ID(), rep.Partitions, rep.Segments, rep.Bytes)
	}
	t.Logf("h40: test took %v", time.Since(start).Round(time.Millisecond))
}

// h40ZooKeeperEraCopy copies a stopped node's log dir as a ZooKeeper-era broker holds it.
func h40ZooKeeperEraCopy(t *testing.T, n *kafkatest.Node) string {
	t.Helper()
	dir := copyTree(t, n.LogDir())
	for _, name := range []string{"__cluster_metadata-0", "bootstrap.checkpoint"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "meta.properties"))
	if err != nil {
		t.Fatal(err)
	}
	cluster := regexp.MustCompile(`(?m)^cluster\.id=(\S+)$`).FindStringSubmatch(string(data))
	if cluster == nil {
		t.Fatalf("%s/meta.properties has no cluster.id:\n%s", dir, data)
	}
	meta := fmt.Sprintf("#\n#Written by a ZooKeeper-era broker (h40)\nversion=0\nbroker.id=%d\ncluster.id=%s\n", n.ID(), cluster[1])
	if err := os.WriteFile(filepath.Join(dir, "meta.properties"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// clusterID is the cluster id the agents archive under.
func (e *h30Env) clusterID(t *testing.T) string {
	t.Helper()
	for _, m := range manifests(t, e.b) {
		return m.ClusterID
	}
	t.Fatal("no manifest in the bucket")
	return ""
}

// h40WaitClaims waits until the partition claims of the topic satisfy cond.
func h40WaitClaims(t *testing.T, b uploader.Bucket, d time.Duration, cond func(map[int32]*archive.Claim) error) map[int32]*archive.Claim {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(d)
	for {
		cat, err := archive.ListAll(ctx, b, archive.NewLayout(""))
		if err != nil {
			t.Fatal(err)
		}
		got := map[int32]*archive.Claim{}
		for _, e := range cat.Claims {
			if e.Key.Topic != h30Topic {
				continue
			}
			data, err := uploader.ReadAll(ctx, b, e.Object.Key, archive.MaxClaimSize)
			if err != nil {
				continue // replaced between the listing and the read
			}
			c, err := archive.DecodeClaim(e.Object.Key, data)
			if err != nil {
				t.Fatal(err)
			}
			got[e.Key.Partition] = c
		}
		err = cond(got)
		if err == nil {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("claims: not within %v: %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// h40WaitLogDirCapture waits until broker's log-dir capture is in the bucket.
func h40WaitLogDirCapture(t *testing.T, b uploader.Bucket, broker int32, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		cat, err := archive.ListAll(context.Background(), b, archive.NewLayout(""))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range cat.LogDirs {
			if e.Key.Broker == broker {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log-dir capture of broker %d within %v", broker, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func h40Grep(s, what string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
