package kafkatest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// StartCluster starts n combined broker+controller nodes, node ids 1..n, that form one KRaft
// cluster with a static voter set of all n (so any majority keeps it running). Each node has
// its own fresh log dir; opts applies to every node (LogDir, NodeID and SkipFormat must be
// unset). The nodes are killed when the test ends. Topics with replication factor > 1 need
// the caller's own CreateTopics (Broker.CreateTopic uses replication factor 1).
func StartCluster(t testing.TB, n int, opts Options) []*Broker {
	t.Helper()
	if n < 1 || opts.LogDir != "" || opts.NodeID != 0 || opts.SkipFormat {
		t.Fatalf("kafkatest: StartCluster(%d): LogDir, NodeID and SkipFormat must be unset", n)
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.ClusterID == "" {
		opts.ClusterID = NewClusterID()
	}
	libs, java := requireKafka(t, opts.Version, false)
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * defaultStartTimeout
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	brokers := make([]*Broker, n)
	var voters []string
	for i := range n {
		o := opts
		o.NodeID = int32(i + 1)
		b, err := prepare(t, o, libs, java)
		if err != nil {
			t.Fatalf("kafkatest: node %d: %v", i+1, err)
		}
		b.addr = "127.0.0.1:" + strconv.Itoa(ports[2*i])
		b.controllerAddr = "127.0.0.1:" + strconv.Itoa(ports[2*i+1])
		brokers[i] = b
		voters = append(voters, fmt.Sprintf("%d@%s", b.NodeID, b.controllerAddr))
	}
	deadline := time.Now().Add(opts.StartTimeout)
	for _, b := range brokers {
		if err := b.writeProps(); err != nil {
			t.Fatalf("kafkatest: %v", err)
		}
		if err := h28SetVoters(b.propsPath, strings.Join(voters, ",")); err != nil {
			t.Fatalf("kafkatest: %v", err)
		}
		if err := b.format(deadline); err != nil {
			t.Fatalf("kafkatest: node %d: %v", b.NodeID, err)
		}
	}
	for _, b := range brokers {
		b := b
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("kafkatest: node %d log %s (last %d lines):\n%s", b.NodeID, b.logPath, logTailLines, b.LogTail(logTailLines))
			}
		})
	}
	// The last voters cannot finish a controlled shutdown without a quorum:
	// the cluster is killed at the end (callers Stop nodes they need clean).
	t.Cleanup(func() {
		for _, b := range brokers {
			b.Kill()
		}
	})
	// A node is ready only once a majority of voters runs: launch them together.
	started := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, b := range brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.launch(deadline)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("kafkatest: node %d: %v\nlog (last %d lines):\n%s", i+1, err, logTailLines, brokers[i].LogTail(logTailLines))
		}
	}
	t.Logf("kafkatest: Kafka %s cluster of %d nodes ready in %v", opts.Version, n, time.Since(started).Round(time.Millisecond))
	return brokers
}

// h28SetVoters rewrites controller.quorum.voters in a written server.properties.
func h28SetVoters(path, voters string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, "controller.quorum.voters=") {
			lines[i] = "controller.quorum.voters=" + propEscape(voters, false)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s: no controller.quorum.voters line", path)
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
}
