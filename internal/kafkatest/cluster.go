package kafkatest

// A multi-node KRaft cluster: N combined broker+controller nodes forming one static quorum
// (controller.quorum.voters lists every node). Combined nodes need one JVM per broker (no
// separate controller JVM to boot on a small machine), every node's log dir holds its own
// replica of __cluster_metadata, and a restored set of log dirs boots as the same cluster
// again (StartCluster with SkipFormat).
//
//	c := kafkatest.StartCluster(t, kafkatest.ClusterOptions{SegmentBytes: 16384})
//	c.CreateTopic(t, "events", 3, nil) // replication factor 3, waits for full ISRs
//	cl := c.Client(t, kgo.DefaultProduceTopic("events"))
//	c.Node(1).Kill()
//	c.Node(1).Restart(t) // same ports, same log dir
//	c.WaitISRFull(t, time.Minute, "events")

import (
	"context"
	"errors"
	"fmt"
	"net"
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
)

const defaultClusterStartTimeout = 3 * time.Minute

// ClusterOptions configures StartCluster. The zero value starts three DefaultVersion nodes
// on fresh temp log dirs.
type ClusterOptions struct {
	// Brokers is the number of nodes (default 3). Each is a combined broker+controller and a
	// voter of the quorum.
	Brokers int
	// Version is the Kafka version of every node (DefaultVersion when empty).
	Version string
	// ClusterID is the KRaft cluster id. Empty: a random one, or with SkipFormat the one in
	// the log dirs' meta.properties (which must all agree).
	ClusterID string
	// Props are extra server.properties entries of every node, applied over ClusterProps.
	// Listener, quorum, node id and log dir keys are managed and rejected (as in Options).
	Props map[string]string
	// SegmentBytes, when > 0, is the segment size of every topic made by Cluster.CreateTopic
	// (see Options.SegmentBytes).
	SegmentBytes int
	// LogDirs, when set, holds one log dir per node (len must be Brokers, or Brokers is
	// taken from it). Empty: fresh t.TempDir()s.
	LogDirs []string
	// SkipFormat boots existing formatted (or restored) log dirs: LogDirs is required and
	// node ids come from each dir's meta.properties.
	SkipFormat bool
	// JavaOpts are the JVM options of every node; nil means DefaultJavaOpts.
	JavaOpts []string
	// StartTimeout bounds format + boot + readiness of all nodes (default 3 min).
	StartTimeout time.Duration
	// StopTimeout bounds each node's graceful stop before SIGKILL (default 30s).
	StopTimeout time.Duration
}

// ClusterProps returns the server.properties defaults of an n-node cluster: DefaultProps
// with replication factor min(n, 3) for new topics and for the internal topics, and
// min.insync.replicas 1 so that producing goes on while a node is down, and no controlled
// shutdown: a stopping broker otherwise waits (up to 5 min) for the active controller to
// approve, and the last node of a stopping cluster has no quorum left to ask. Its log dir is
// still shut down cleanly (.kafka_cleanshutdown); its leaderships move when its session
// expires (broker.session.timeout.ms, 4s).
func ClusterProps(version string, n int) map[string]string {
	rf := strconv.Itoa(min(max(n, 1), 3))
	p := DefaultProps(version)
	p["controlled.shutdown.enable"] = "false"
	p["default.replication.factor"] = rf
	p["offsets.topic.replication.factor"] = rf
	p["transaction.state.log.replication.factor"] = rf
	p["min.insync.replicas"] = "1"
	p["transaction.state.log.min.isr"] = "1"
	if majorVersion(version) >= 4 {
		p["share.coordinator.state.topic.replication.factor"] = rf
		p["share.coordinator.state.topic.min.isr"] = "1"
	}
	return p
}

// Cluster is a running (or stopped) multi-node KRaft cluster.
type Cluster struct {
	// Version is the Kafka version of every node.
	Version string
	// ClusterID is the KRaft cluster id of every node.
	ClusterID string
	// BootTime is how long StartCluster took from the first format to the last node ready.
	BootTime time.Duration

	opts   ClusterOptions // resolved
	props  map[string]string
	libs   string
	java   string
	voters string
	nodes  []*Node
}

// Node is one node of a Cluster; it keeps its id, ports, log dir and broker log across
// Kill/Stop/Restart.
type Node struct {
	c              *Cluster
	id             int32
	logDir         string
	workDir        string
	addr           string
	controllerAddr string

	mu sync.Mutex
	b  *Broker // the current (or last) process
}

// StartCluster formats (unless SkipFormat) and boots opts.Brokers combined KRaft nodes on
// 127.0.0.1 in parallel and waits until every node serves metadata listing itself. The
// nodes are stopped when the test ends and their log tails printed if it failed. Like
// Start, it skips the test when Kafka is unavailable locally and fails it in CI.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	libs, java := requireKafka(t, opts.Version, false)
	c, err := prepareCluster(t, opts, libs, java)
	if err != nil {
		t.Fatalf("kafkatest: cluster of Kafka %s: %v", opts.Version, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				if errs := n.ErrorLines(20); errs != "" {
					t.Logf("kafkatest: cluster node %d log %s (first ERROR/FATAL lines):\n%s", n.id, n.LogPath(), errs)
				}
				t.Logf("kafkatest: cluster node %d log %s (last %d lines):\n%s", n.id, n.LogPath(), logTailLines, n.LogTail(logTailLines))
			}
		}
	})
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("kafkatest: %v", err)
		}
	})
	started := time.Now()
	deadline := started.Add(c.opts.StartTimeout)
	brokers := make([]*Broker, len(c.nodes))
	for i, n := range c.nodes {
		b, err := n.newBroker(t, c.opts.SkipFormat)
		if err != nil {
			t.Fatalf("kafkatest: cluster node %d: %v", n.id, err)
		}
		brokers[i] = b
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.run(brokers[i], !c.opts.SkipFormat, deadline)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("kafkatest: cluster of Kafka %s (%d nodes): %v", c.Version, len(c.nodes), err)
	}
	c.BootTime = time.Since(started)
	t.Logf("kafkatest: Kafka %s cluster %s of %d nodes ready at %s in %v", c.Version, c.ClusterID, len(c.nodes),
		strings.Join(c.Addrs(), ","), c.BootTime.Round(time.Millisecond))
	return c
}

func prepareCluster(t testing.TB, opts ClusterOptions, libs, java string) (*Cluster, error) {
	if opts.Brokers == 0 {
		opts.Brokers = max(len(opts.LogDirs), 3)
	}
	if opts.Brokers < 1 {
		return nil, fmt.Errorf("ClusterOptions.Brokers %d < 1", opts.Brokers)
	}
	if len(opts.LogDirs) != 0 && len(opts.LogDirs) != opts.Brokers {
		return nil, fmt.Errorf("ClusterOptions.LogDirs has %d dirs for %d brokers", len(opts.LogDirs), opts.Brokers)
	}
	if opts.SkipFormat && len(opts.LogDirs) == 0 {
		return nil, errors.New("SkipFormat needs ClusterOptions.LogDirs (existing, formatted log dirs)")
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultClusterStartTimeout
	}
	for k := range opts.Props {
		if hint, ok := managedProps[k]; ok {
			if hint == "" || strings.Contains(hint, "Options.") {
				hint = "the cluster helper sets it"
			}
			return nil, fmt.Errorf("ClusterOptions.Props may not set %q (%s)", k, hint)
		}
	}
	props := ClusterProps(opts.Version, opts.Brokers)
	for k, v := range opts.Props {
		props[k] = v
	}
	c := &Cluster{Version: opts.Version, ClusterID: opts.ClusterID, opts: opts, props: props, libs: libs, java: java}
	ids := make([]int32, opts.Brokers)
	dirs := make([]string, opts.Brokers)
	for i := range ids {
		ids[i] = int32(i + 1)
		if len(opts.LogDirs) > 0 {
			abs, err := filepath.Abs(opts.LogDirs[i])
			if err != nil {
				return nil, err
			}
			dirs[i] = abs
		} else {
			dirs[i] = t.TempDir()
		}
	}
	if opts.SkipFormat {
		seen := map[int32]string{}
		for i, d := range dirs {
			meta, err := ReadMetaProperties(d)
			if err != nil {
				return nil, fmt.Errorf("SkipFormat: log dir %s is not formatted: %v", d, err)
			}
			nid, err := strconv.ParseInt(meta["node.id"], 10, 32)
			if err != nil || nid < 0 {
				return nil, fmt.Errorf("SkipFormat: bad node.id %q in %s/meta.properties", meta["node.id"], d)
			}
			if prev, dup := seen[int32(nid)]; dup {
				return nil, fmt.Errorf("SkipFormat: node.id %d in both %s and %s", nid, prev, d)
			}
			seen[int32(nid)] = d
			ids[i] = int32(nid)
			if c.ClusterID == "" {
				c.ClusterID = meta["cluster.id"]
			} else if meta["cluster.id"] != c.ClusterID {
				return nil, fmt.Errorf("SkipFormat: cluster.id %q in %s/meta.properties, want %q", meta["cluster.id"], d, c.ClusterID)
			}
		}
	} else {
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(d, "meta.properties")); err == nil {
				return nil, fmt.Errorf("log dir %s is already formatted (meta.properties exists); set SkipFormat to boot on it", d)
			}
		}
		if c.ClusterID == "" {
			c.ClusterID = NewClusterID()
		}
	}
	if err := ValidClusterID(c.ClusterID); err != nil {
		return nil, err
	}
	// Ports of every node are fixed for the cluster's life: the static voter set names the
	// controller listeners, so a restarted node must come back on the same ones.
	ports, err := freePorts(2 * opts.Brokers)
	if err != nil {
		return nil, err
	}
	var voters []string
	for i := range ids {
		n := &Node{c: c, id: ids[i], logDir: dirs[i], workDir: t.TempDir(),
			addr:           net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])),
			controllerAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i+1]))}
		c.nodes = append(c.nodes, n)
		voters = append(voters, fmt.Sprintf("%d@%s", n.id, n.controllerAddr))
	}
	c.voters = strings.Join(voters, ",")
	return c, nil
}

// newBroker prepares (but does not start) a process of this node.
func (n *Node) newBroker(t testing.TB, skipFormat bool) (*Broker, error) {
	c := n.c
	b, err := prepare(t, Options{Version: c.Version, LogDir: n.logDir, ClusterID: c.ClusterID, NodeID: n.id,
		Props: c.props, SegmentBytes: c.opts.SegmentBytes, SkipFormat: skipFormat, JavaOpts: c.opts.JavaOpts,
		StartTimeout: c.opts.StartTimeout, StopTimeout: c.opts.StopTimeout}, c.libs, c.java)
	if err != nil {
		return nil, err
	}
	b.workDir = n.workDir
	b.logPath = filepath.Join(n.workDir, "broker.log")
	b.propsPath = filepath.Join(n.workDir, "server.properties")
	b.addr, b.controllerAddr, b.voters = n.addr, n.controllerAddr, c.voters
	return b, nil
}

// run writes the props, formats if asked and launches b as this node's process.
func (n *Node) run(b *Broker, format bool, deadline time.Time) error {
	n.mu.Lock()
	n.b = b
	n.mu.Unlock()
	if err := b.writeProps(); err != nil {
		return fmt.Errorf("node %d: %w", n.id, err)
	}
	if format {
		if err := b.format(deadline); err != nil {
			return fmt.Errorf("node %d: %w", n.id, err)
		}
	}
	if err := b.launch(deadline); err != nil {
		return fmt.Errorf("node %d (%s, log %s): %w", n.id, n.addr, b.logPath, err)
	}
	return nil
}

// Nodes returns the nodes in node id order of creation (ids 1..N for a fresh cluster).
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns the node with the given node id, nil if there is none.
func (c *Cluster) Node(id int32) *Node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// Addrs returns every node's PLAINTEXT address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// LogDirs returns every node's log dir, in Nodes() order.
func (c *Cluster) LogDirs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.logDir
	}
	return out
}

// Options returns the resolved options.
func (c *Cluster) Options() ClusterOptions { return c.opts }

// Props returns the server.properties entries (beyond the managed ones) every node runs with.
func (c *Cluster) Props() map[string]string {
	out := make(map[string]string, len(c.props))
	for k, v := range c.props {
		out[k] = v
	}
	return out
}

// Client returns a franz-go client seeded with every node; closed when the test ends.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, c.Addrs(), opts)
}

// Admin returns a kadm client on a fresh Client (closed when the test ends).
func (c *Cluster) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(c.Client(t))
}

// CreateTopic creates a topic with replication factor min(nodes, 3) and waits until every
// partition's ISR holds all its replicas. Options.SegmentBytes applies as in
// Broker.CreateTopic.
func (c *Cluster) CreateTopic(t testing.TB, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	cfg := topicConfigs(configs, c.Version, c.opts.SegmentBytes)
	rf := int16(min(len(c.nodes), 3))
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatalf("kafkatest: kgo.NewClient: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, rf, cfg, topic)
	if err == nil {
		if r, ok := resp[topic]; !ok {
			err = errors.New("no result for the topic in the CreateTopics response")
		} else if r.Err != nil {
			err = r.Err
			if r.ErrMessage != "" {
				err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
			}
		}
	}
	if err != nil {
		t.Fatalf("kafkatest: create topic %q (%d partitions, replication factor %d, configs %v): %v", topic, partitions, rf, cfg2str(cfg), err)
	}
	c.WaitISRFull(t, time.Minute, topic)
}

// PartitionInfo is one partition's replica assignment as the metadata reports it.
type PartitionInfo struct {
	Partition int32
	Leader    int32
	Replicas  []int32
	ISR       []int32
}

// Partitions returns the metadata of topic's partitions, sorted by partition. It fails the
// test if no running node answers within 30s.
func (c *Cluster) Partitions(t testing.TB, topic string) []PartitionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		out, err := c.partitions(ctx, topic)
		if err == nil {
			return out
		}
		// A node that answers before the new topic's metadata reached it
		// says UNKNOWN_TOPIC_OR_PARTITION (3) or LEADER_NOT_AVAILABLE (5):
		// ask again until the deadline.
		var me *metadataError
		if !errors.As(err, &me) || (me.code != 3 && me.code != 5) || ctx.Err() != nil {
			t.Fatalf("kafkatest: metadata of topic %q: %v", topic, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kafkatest: metadata of topic %q: %v (%v)", topic, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// metadataError is a topic-level error code in a Metadata response.
type metadataError struct{ code int16 }

func (e *metadataError) Error() string { return fmt.Sprintf("metadata error code %d", e.code) }

func (c *Cluster) partitions(ctx context.Context, topic string) ([]PartitionInfo, error) {
	var seeds []string
	for _, n := range c.nodes {
		if n.Running() {
			seeds = append(seeds, n.addr)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("no node is running")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DialTimeout(time.Second), kgo.RequestRetries(1))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	for _, tp := range resp.Topics {
		if tp.Topic == nil || *tp.Topic != topic {
			continue
		}
		if tp.ErrorCode != 0 {
			return nil, &metadataError{code: tp.ErrorCode}
		}
		out := make([]PartitionInfo, 0, len(tp.Partitions))
		for _, p := range tp.Partitions {
			out = append(out, PartitionInfo{Partition: p.Partition, Leader: p.Leader,
				Replicas: append([]int32(nil), p.Replicas...), ISR: append([]int32(nil), p.ISR...)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
		return out, nil
	}
	return nil, errors.New("topic not in metadata")
}

// WaitISRFull waits until every partition of each topic has a leader and an ISR holding
// every one of its replicas, failing the test after timeout.
func (c *Cluster) WaitISRFull(t testing.TB, timeout time.Duration, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, topic := range topics {
		var last error
		for {
			ps, err := c.partitions(ctx, topic)
			last = err
			if err == nil {
				last = isrFull(ps)
			}
			if last == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("kafkatest: topic %q: ISR not full after %v: %v", topic, timeout, last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func isrFull(ps []PartitionInfo) error {
	if len(ps) == 0 {
		return errors.New("no partitions in metadata")
	}
	for _, p := range ps {
		if p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", p.Partition)
		}
		for _, r := range p.Replicas {
			found := false
			for _, i := range p.ISR {
				found = found || i == r
			}
			if !found {
				return fmt.Errorf("partition %d: replica %d not in ISR %v (replicas %v)", p.Partition, r, p.ISR, p.Replicas)
			}
		}
	}
	return nil
}

// Stop stops every running node gracefully, all at once (so that each finds the quorum
// still alive for its controlled shutdown), and returns every node's Stop error.
// Idempotent per node.
func (c *Cluster) Stop() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.Stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ID is the node's node.id.
func (n *Node) ID() int32 { return n.id }

// Addr is the node's PLAINTEXT address (the same across restarts).
func (n *Node) Addr() string { return n.addr }

// ControllerAddr is the node's CONTROLLER address (the same across restarts).
func (n *Node) ControllerAddr() string { return n.controllerAddr }

// LogDir is the node's log.dirs directory.
func (n *Node) LogDir() string { return n.logDir }

// PartitionDir is LogDir()/<topic>-<partition>.
func (n *Node) PartitionDir(topic string, partition int32) string {
	return filepath.Join(n.logDir, fmt.Sprintf("%s-%d", topic, partition))
}

// LogPath is the node's broker log (kept across restarts; each start appends).
func (n *Node) LogPath() string { return filepath.Join(n.workDir, "broker.log") }

// PropsPath is the node's server.properties.
func (n *Node) PropsPath() string { return filepath.Join(n.workDir, "server.properties") }

// LogTail returns the last lines of the node's broker log.
func (n *Node) LogTail(lines int) string {
	if b := n.Broker(); b != nil {
		return b.LogTail(lines)
	}
	return "(never started)"
}

// ErrorLines returns up to n lines of the node's broker log that log at ERROR or FATAL level
// (the cause of a crash is often far above the log's tail), "" if there are none.
func (n *Node) ErrorLines(max int) string {
	data, err := os.ReadFile(n.LogPath())
	if err != nil {
		return ""
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "] ERROR ") || strings.Contains(l, "] FATAL ") || strings.Contains(l, "Exiting Kafka") {
			out = append(out, l)
			if len(out) == max {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// Broker returns the node's current (or last) process, nil before its first start.
func (n *Node) Broker() *Broker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.b
}

// Running reports whether the node's process is alive.
func (n *Node) Running() bool {
	b := n.Broker()
	return b != nil && b.Running()
}

// Stop stops the node gracefully (see Broker.Stop). Idempotent; nil before the first start.
func (n *Node) Stop() error {
	if b := n.Broker(); b != nil {
		if err := b.Stop(); err != nil {
			return fmt.Errorf("node %d: %w", n.id, err)
		}
	}
	return nil
}

// Kill SIGKILLs the node (a crash) and waits for the process to exit.
func (n *Node) Kill() {
	if b := n.Broker(); b != nil {
		b.Kill()
	}
}

// Restart stops the node if it is still running (a failed clean stop fails the test) and
// boots it again on the same log dir and ports, without formatting, waiting until it serves
// metadata listing itself. After Kill this is a crash restart.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if err := n.Stop(); err != nil {
		t.Fatalf("kafkatest: restart: %v", err)
	}
	b, err := n.newBroker(t, true)
	if err != nil {
		t.Fatalf("kafkatest: restart node %d: %v", n.id, err)
	}
	started := time.Now()
	if err := n.run(b, false, started.Add(n.c.opts.StartTimeout)); err != nil {
		t.Fatalf("kafkatest: restart: %v\nlog (last %d lines):\n%s", err, logTailLines, b.LogTail(logTailLines))
	}
	t.Logf("kafkatest: node %d restarted at %s in %v", n.id, n.addr, time.Since(started).Round(time.Millisecond))
}
