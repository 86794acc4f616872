package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestH30ClusterOptionsValidation needs no Kafka: bad options are refused before any JVM.
func TestH30ClusterOptionsValidation(t *testing.T) {
	formatted := t.TempDir()
	if err := os.WriteFile(formatted+"/meta.properties", []byte("version=1\nnode.id=1\ncluster.id="+NewClusterID()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts ClusterOptions
		want string
	}{
		{"managed-prop", ClusterOptions{Props: map[string]string{"controller.quorum.voters": "1@x:1"}}, `may not set "controller.quorum.voters"`},
		{"node-id-prop", ClusterOptions{Props: map[string]string{"node.id": "4"}}, `may not set "node.id"`},
		{"dirs-count", ClusterOptions{Brokers: 3, LogDirs: []string{t.TempDir()}}, "1 dirs for 3 brokers"},
		{"skip-format-no-dirs", ClusterOptions{SkipFormat: true}, "SkipFormat needs ClusterOptions.LogDirs"},
		{"already-formatted", ClusterOptions{Brokers: 1, LogDirs: []string{formatted}}, "already formatted"},
		{"not-formatted", ClusterOptions{Brokers: 1, LogDirs: []string{t.TempDir()}, SkipFormat: true}, "is not formatted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Version = DefaultVersion
			_, err := prepareCluster(t, tc.opts, t.TempDir(), "java")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c, err := prepareCluster(t, ClusterOptions{Version: DefaultVersion}, t.TempDir(), "java")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.nodes) != 3 || c.props["default.replication.factor"] != "3" || c.props["offsets.topic.replication.factor"] != "3" {
		t.Fatalf("defaults: %d nodes, props %v", len(c.nodes), c.props)
	}
	if want := fmt.Sprintf("1@%s,2@%s,3@%s", c.nodes[0].controllerAddr, c.nodes[1].controllerAddr, c.nodes[2].controllerAddr); c.voters != want {
		t.Fatalf("voters %q, want %q", c.voters, want)
	}
}

// TestH30Cluster boots three real combined KRaft nodes, creates a replication-factor-3
// topic, checks every node's log dir holds a replica, SIGKILLs one node while producing,
// restarts it (same ports, crash recovery) and waits for full ISRs, then stops the cluster
// and boots the same log dirs again with SkipFormat: every record is still there at its
// offset.
func TestH30Cluster(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka")
	}
	for _, v := range Versions {
		t.Run(v, func(t *testing.T) { h30RunCluster(t, v) })
	}
}

func h30RunCluster(t *testing.T, version string) {
	ctx := context.Background()
	c := StartCluster(t, ClusterOptions{Version: version, SegmentBytes: 16 << 10})
	t.Logf("boot of 3 nodes: %v", c.BootTime.Round(time.Millisecond))
	c.CreateTopic(t, "events", 3, nil)
	for _, p := range c.Partitions(t, "events") {
		if len(p.Replicas) != 3 || len(p.ISR) != 3 {
			t.Fatalf("partition %d: replicas %v ISR %v, want 3 each", p.Partition, p.Replicas, p.ISR)
		}
	}
	cl := c.Client(t, kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	want := map[string]string{}    // "partition/offset" -> value
	produce := func(n, base int) { // in rounds of 30 records: one small batch per partition each
		t.Helper()
		for done := 0; done < n; done += 30 {
			var rs []*kgo.Record
			for i := done; i < min(n, done+30); i++ {
				rs = append(rs, &kgo.Record{Value: fmt.Appendf(nil, "value-%06d-%s", base+i, strings.Repeat("abcdefghij", 10))})
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			for _, r := range rs {
				want[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = string(r.Value)
			}
		}
	}
	produce(600, 0)
	for _, n := range c.Nodes() {
		for p := int32(0); p < 3; p++ {
			segs, err := SegmentFiles(n.PartitionDir("events", p))
			if err != nil || len(segs) < 2 {
				t.Errorf("node %d partition %d: %d segments (%v), want a replica that rolled", n.ID(), p, len(segs), err)
			}
		}
	}
	victim := c.Node(2)
	victim.Kill()
	if victim.Running() {
		t.Fatal("node 2 still running after Kill")
	}
	produce(300, 600)
	start := time.Now()
	victim.Restart(t)
	c.WaitISRFull(t, 2*time.Minute, "events")
	t.Logf("node 2: crash restart to full ISR in %v", time.Since(start).Round(time.Millisecond))
	produce(100, 900)
	if err := c.Stop(); err != nil {
		t.Fatalf("clean stop of the cluster: %v", err)
	}
	for _, n := range c.Nodes() {
		if _, err := os.Stat(n.LogDir() + "/.kafka_cleanshutdown"); err != nil {
			t.Errorf("node %d: %v", n.ID(), err)
		}
	}

	again := StartCluster(t, ClusterOptions{Version: version, LogDirs: c.LogDirs(), SkipFormat: true})
	if again.ClusterID != c.ClusterID {
		t.Fatalf("rebooted cluster id %s, want %s", again.ClusterID, c.ClusterID)
	}
	again.WaitISRFull(t, time.Minute, "events")
	rd := again.Client(t, kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	deadline := time.Now().Add(time.Minute)
	for got < len(want) && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := rd.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if want[k] != string(r.Value) {
				t.Errorf("%s: got %q, want %q", k, r.Value, want[k])
			}
			got++
		})
	}
	if got != len(want) {
		t.Fatalf("consumed %d records after the reboot, want %d", got, len(want))
	}
	t.Logf("Kafka %s: %d records at their offsets after a crash restart and a full reboot", version, got)
}

// TestH30ClusterMissingKafka: like Start, StartCluster skips without the jars locally and
// fails in CI.
func TestH30ClusterMissingKafka(t *testing.T) {
	const v = "0.0.3-missing"
	t.Setenv(LibsEnvVar(v), t.TempDir()+"/nope")
	for _, ci := range []string{"", "false", "true"} {
		t.Setenv("CI", ci)
		wantFatal := ci == "true"
		f := runFake(func(tb testing.TB) { StartCluster(tb, ClusterOptions{Version: v}) })
		if f.fataled != wantFatal || f.skipped == wantFatal {
			t.Errorf("CI=%q: fatal=%v skipped=%v, want fatal=%v", ci, f.fataled, f.skipped, wantFatal)
		}
		if !strings.Contains(f.msg, "make kafka-jars") {
			t.Errorf("CI=%q: message %q does not mention make kafka-jars", ci, f.msg)
		}
	}
}
