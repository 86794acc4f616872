// Package kafkatest runs a real, single-node Apache Kafka broker (KRaft mode, combined
// broker+controller) from the jars that `make kafka-jars` resolves from Maven Central into
// <module root>/.tools/kafka/<version>/libs, and wraps Kafka's own DumpLogSegments tool
// (classpath in .tools/kafka/<version>/tools).
//
// Typical use:
//
//	b := kafkatest.Start(t, kafkatest.Options{SegmentBytes: 16384})
//	b.CreateTopic(t, "events", 2, nil)
//	cl := b.Client(t, kgo.DefaultProduceTopic("events"))
//	...
//	b.Stop()
//	b2 := b.Restart(t) // same log dir, no format
//
// When the jars or java are missing the test is skipped, except when CI=true: then it fails
// and tells you to run `make kafka-jars`.
package kafkatest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

const (
	// DefaultVersion is the Kafka line used when Options.Version is empty (newest 4.x).
	DefaultVersion = "4.4.0"
	// SecondVersion is the second supported line (newest 3.9.x).
	SecondVersion = "3.9.2"

	// MinSegmentBytes4x is the smallest segment.bytes / log.segment.bytes Kafka 4.x accepts
	// (KIP-1030). Smaller segments need the topic-level internal.segment.bytes instead.
	MinSegmentBytes4x = 1 << 20

	defaultStartTimeout = 90 * time.Second
	defaultStopTimeout  = 30 * time.Second
	toolTimeout         = 2 * time.Minute
	logTailLines        = 60
)

// Versions lists every supported Kafka line, default first.
var Versions = []string{DefaultVersion, SecondVersion}

// DefaultJavaOpts are used when Options.JavaOpts is nil: a small heap and a fast-starting JIT
// (C1 only), which is what a short test wants on a small machine.
var DefaultJavaOpts = []string{
	"-Xms64m", "-Xmx512m",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-XX:+ExitOnOutOfMemoryError",
	"-XX:-UsePerfData",
	"-Djava.awt.headless=true",
}

// managedProps are server.properties keys the helper owns (Options.Props may not set them),
// with a hint where an Options field sets them instead.
var managedProps = map[string]string{
	"process.roles":                       "",
	"node.id":                             "use Options.NodeID",
	"broker.id":                           "use Options.NodeID",
	"controller.quorum.voters":            "",
	"controller.quorum.bootstrap.servers": "",
	"listeners":                           "",
	"advertised.listeners":                "",
	"listener.security.protocol.map":      "",
	"controller.listener.names":           "",
	"inter.broker.listener.name":          "",
	"log.dirs":                            "use Options.LogDir",
	"log.dir":                             "use Options.LogDir",
	"metadata.log.dir":                    "use Options.LogDir",
}

// Options configures Start. The zero value starts DefaultVersion on a fresh temp log dir.
type Options struct {
	// Version is the Kafka version whose jars run the broker (DefaultVersion when empty).
	Version string
	// LogDir is log.dirs (a single dir). Empty: a fresh t.TempDir().
	LogDir string
	// ClusterID is the KRaft cluster id (Kafka's 22-char URL-safe base64 uuid). Empty: a
	// random one, or with SkipFormat the one in LogDir/meta.properties.
	ClusterID string
	// NodeID is node.id. Zero: 1, or with SkipFormat the one in LogDir/meta.properties (so
	// node id 0 is only reachable through SkipFormat).
	NodeID int32
	// Props are extra server.properties entries; they override the single-node defaults
	// (see DefaultProps). Listener, quorum, node id and log dir keys are managed and rejected.
	Props map[string]string
	// SegmentBytes, when > 0, is the segment size of every topic made by Broker.CreateTopic
	// (segment.bytes, or internal.segment.bytes on 4.x below 1 MiB). Where Kafka allows the
	// value (3.x, or >= 1 MiB) it is also the broker default log.segment.bytes.
	SegmentBytes int
	// SkipFormat boots on an existing, already formatted (or restored) LogDir: it must hold
	// meta.properties and __cluster_metadata-0.
	SkipFormat bool
	// JavaOpts are JVM options; nil means DefaultJavaOpts. They are placed after the
	// helper's logging -D options, so -Dorg.slf4j.simpleLogger.* given here win.
	JavaOpts []string
	// StartTimeout bounds format + boot + readiness (default 90s).
	StartTimeout time.Duration
	// StopTimeout bounds a graceful Stop before SIGKILL (default 30s; 2 min more when the JVM
	// also dumps the class-data-sharing archive, see cds.go).
	StopTimeout time.Duration
}

// DefaultProps returns the server.properties defaults Start applies before Options.Props:
// everything a single node needs (replication factors 1, one partition for internal topics,
// no initial rebalance delay, a small cleaner buffer, few threads, a 4s broker session so that
// a restart after Kill registers quickly).
func DefaultProps(version string) map[string]string {
	p := map[string]string{
		"num.partitions":                           "1",
		"default.replication.factor":               "1",
		"min.insync.replicas":                      "1",
		"offsets.topic.replication.factor":         "1",
		"offsets.topic.num.partitions":             "1",
		"transaction.state.log.replication.factor": "1",
		"transaction.state.log.min.isr":            "1",
		"transaction.state.log.num.partitions":     "1",
		"group.initial.rebalance.delay.ms":         "0",
		"log.cleaner.dedupe.buffer.size":           strconv.Itoa(16 << 20),
		"num.network.threads":                      "2",
		"num.io.threads":                           "4",
		"background.threads":                       "4",
		"num.recovery.threads.per.data.dir":        "1",
		// After a crash (Kill) the restarted broker cannot register until the controller
		// expires the old incarnation's session (DUPLICATE_BROKER_REGISTRATION): 9s by default.
		"broker.session.timeout.ms":    "4000",
		"broker.heartbeat.interval.ms": "1000",
	}
	if majorVersion(version) >= 4 {
		p["share.coordinator.state.topic.replication.factor"] = "1"
		p["share.coordinator.state.topic.min.isr"] = "1"
		p["share.coordinator.state.topic.num.partitions"] = "1"
	}
	return p
}

// Broker is one running (or stopped) Kafka broker process.
type Broker struct {
	// Version is the Kafka version of the jars running this broker.
	Version string
	// ClusterID is the KRaft cluster id stored in LogDir()/meta.properties.
	ClusterID string
	// NodeID is node.id.
	NodeID int32

	opts           Options // resolved
	libs           string
	java           string
	logDir         string
	workDir        string
	logPath        string
	propsPath      string
	addr           string
	controllerAddr string
	voters         string // controller.quorum.voters of a multi-node cluster (cluster.go); empty: this node alone

	cmd     *exec.Cmd
	cdsDump bool          // the JVM dumps a CDS archive at exit (slower stop)
	done    chan struct{} // closed when the process has exited
	// Set before done is closed:
	waitErr error

	mu      sync.Mutex
	stopped bool // Stop or Kill was called
	stopErr error
}

// LibsDir returns the directory holding the broker jars of the given Kafka version: the env
// var SEGVAULT_KAFKA_LIBS_<version with dots as underscores> when set, else
// <module root>/.tools/kafka/<version>/libs (module root: first dir holding go.mod above the
// working directory). It fails when the directory is missing, holds no jar, or holds no
// kafka_*-<version>*.jar.
func LibsDir(version string) (string, error) {
	dir, err := jarDir(version, "libs", LibsEnvVar(version))
	if err != nil {
		return "", err
	}
	core, _ := filepath.Glob(filepath.Join(dir, "kafka_*-"+version+"*.jar"))
	if len(core) == 0 {
		return "", fmt.Errorf("kafkatest: %s holds no kafka_<scala>-%s.jar; it is not the Kafka %s libs dir", dir, version, version)
	}
	return dir, nil
}

// ToolsDir returns the directory holding the CLI tools' classpath (DumpLogSegments) for the
// given Kafka version: SEGVAULT_KAFKA_TOOLS_<version> when set, else
// <module root>/.tools/kafka/<version>/tools. It may hold another Kafka version's tools (4.4.0
// uses 4.3.1's, see pom.xml). It fails when the directory is missing or holds no jar.
func ToolsDir(version string) (string, error) {
	return jarDir(version, "tools", ToolsEnvVar(version))
}

// LibsEnvVar is the environment variable that overrides LibsDir(version).
func LibsEnvVar(version string) string { return "SEGVAULT_KAFKA_LIBS_" + envVersion(version) }

// ToolsEnvVar is the environment variable that overrides ToolsDir(version).
func ToolsEnvVar(version string) string { return "SEGVAULT_KAFKA_TOOLS_" + envVersion(version) }

func envVersion(v string) string { return strings.NewReplacer(".", "_", "-", "_").Replace(v) }

func jarDir(version, sub, env string) (string, error) {
	if version == "" {
		return "", errors.New("kafkatest: empty Kafka version")
	}
	dir := os.Getenv(env)
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".tools", "kafka", version, sub)
	} else if !filepath.IsAbs(dir) {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("kafkatest: %s=%q: %w", env, dir, err)
		}
		dir = abs
	}
	jars, err := filepath.Glob(filepath.Join(dir, "*.jar"))
	if err != nil {
		return "", fmt.Errorf("kafkatest: listing %s: %w", dir, err)
	}
	if len(jars) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("kafkatest: Kafka %s jars (%s) not found: %w; run `make kafka-jars` or set %s", version, sub, err, env)
		}
		return "", fmt.Errorf("kafkatest: Kafka %s jars (%s) not found: %s holds no .jar; run `make kafka-jars` or set %s", version, sub, dir, env)
	}
	return dir, nil
}

func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("kafkatest: no go.mod in %s or any parent", wd)
		}
		dir = parent
	}
}

// javaBinary finds java: $JAVA_HOME/bin/java, else java on PATH.
func javaBinary() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		p := filepath.Join(home, "bin", "java")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("kafkatest: java not found (JAVA_HOME unset or wrong, and no java on PATH): %w", err)
	}
	return p, nil
}

// InCI reports whether the CI environment variable is true (CI=true, as GitHub Actions and
// most CI systems set it). In CI missing Kafka jars or java fail the test instead of
// skipping it.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// requireKafka returns the libs (or, with tools, the tools) dir and the java binary, or skips
// (locally) / fails (CI=true).
func requireKafka(t testing.TB, version string, tools bool) (dir, java string) {
	t.Helper()
	find := LibsDir
	if tools {
		find = ToolsDir
	}
	dir, err := find(version)
	if err == nil {
		java, err = javaBinary()
	}
	if err != nil {
		msg := fmt.Sprintf("real Kafka %s unavailable: %v", version, err)
		if !strings.Contains(msg, "make kafka-jars") {
			msg += "; install a JDK (17+) and run `make kafka-jars`"
		}
		if InCI() {
			t.Fatalf("%s [CI=true: not skipping]", msg)
		}
		t.Skip(msg)
	}
	return dir, java
}

// NewClusterID returns a random KRaft cluster id in Kafka's Uuid.randomUuid().toString() form:
// 16 random bytes, URL-safe base64 without padding, never starting with '-' and never one
// of Kafka's reserved ids (all zeros, or 1 = the metadata topic id).
func NewClusterID() string {
	var b [16]byte
	for {
		_, _ = rand.Read(b[:]) // never fails since Go 1.24
		s := base64.RawURLEncoding.EncodeToString(b[:])
		if strings.HasPrefix(s, "-") || s == "AAAAAAAAAAAAAAAAAAAAAA" || s == "AAAAAAAAAAAAAAAAAAAAAQ" {
			continue
		}
		return s
	}
}

// ValidClusterID reports whether id parses as a Kafka Uuid string.
func ValidClusterID(id string) error {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) != 16 {
		return fmt.Errorf("kafkatest: cluster id %q is not a Kafka uuid (22 chars of URL-safe base64 for 16 bytes)", id)
	}
	return nil
}

// majorVersion returns the major number of a "4.4.0"-style version, 0 if unparsable.
func majorVersion(v string) int {
	maj, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(maj)
	if err != nil {
		return 0
	}
	return n
}

// TopicSegmentBytesKey returns the topic config that sets an n-byte segment size on the given
// Kafka version: segment.bytes, or internal.segment.bytes on 4.x when n < 1 MiB (4.x rejects
// smaller segment.bytes; internal.segment.bytes is its test-only escape hatch).
func TopicSegmentBytesKey(version string, n int) string {
	if majorVersion(version) >= 4 && n < MinSegmentBytes4x {
		return "internal.segment.bytes"
	}
	return "segment.bytes"
}

// ReadMetaProperties parses <logDir>/meta.properties (a Java properties file).
func ReadMetaProperties(logDir string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(logDir, "meta.properties"))
	if err != nil {
		return nil, fmt.Errorf("kafkatest: %w", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			k, v, _ = strings.Cut(line, ":")
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, sc.Err()
}

// Start formats (unless SkipFormat) and boots a single-node KRaft broker and waits until it
// serves metadata. The broker is stopped gracefully when the test ends; its log is printed
// (tail) if the test failed. Start skips or fails the test when Kafka is unavailable (see
// package doc) and fails it on any other problem.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	libs, java := requireKafka(t, opts.Version, false)
	b, err := prepare(t, opts, libs, java)
	if err != nil {
		t.Fatalf("kafkatest: Kafka %s: %v", opts.Version, err)
	}
	started := time.Now()
	if err := b.boot(); err != nil {
		msg := fmt.Sprintf("kafkatest: Kafka %s: %v", b.Version, err)
		if _, statErr := os.Stat(b.logPath); statErr == nil {
			msg += fmt.Sprintf("\nbroker log %s (last %d lines):\n%s", b.logPath, logTailLines, b.LogTail(logTailLines))
		}
		t.Fatal(msg)
	}
	// Registered before the stop below so that it runs after it: the tail then also shows
	// the shutdown.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kafkatest: Kafka %s broker log %s (last %d lines):\n%s", b.Version, b.logPath, logTailLines, b.LogTail(logTailLines))
		}
	})
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("kafkatest: %v", err)
		}
	})
	t.Logf("kafkatest: Kafka %s node %d ready at %s in %v (log dir %s)", b.Version, b.NodeID, b.addr, time.Since(started).Round(time.Millisecond), b.logDir)
	return b
}

// prepare resolves options, checks the log dir and writes nothing to the broker yet.
func prepare(t testing.TB, opts Options, libs, java string) (*Broker, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = defaultStopTimeout
	}
	if opts.JavaOpts == nil {
		opts.JavaOpts = DefaultJavaOpts
	}
	for k := range opts.Props {
		if hint, ok := managedProps[k]; ok {
			if hint == "" {
				hint = "the helper sets it"
			}
			return nil, fmt.Errorf("Options.Props may not set %q (%s)", k, hint)
		}
	}
	if v, ok := opts.Props["log.segment.bytes"]; ok && majorVersion(opts.Version) >= 4 {
		if n, err := strconv.Atoi(v); err == nil && n < MinSegmentBytes4x {
			return nil, fmt.Errorf("log.segment.bytes=%d is below Kafka 4.x's minimum %d; use Options.SegmentBytes with Broker.CreateTopic (sets internal.segment.bytes per topic)", n, MinSegmentBytes4x)
		}
	}
	if opts.SegmentBytes < 0 {
		return nil, fmt.Errorf("negative Options.SegmentBytes %d", opts.SegmentBytes)
	}

	if opts.LogDir == "" {
		if opts.SkipFormat {
			return nil, errors.New("SkipFormat needs Options.LogDir (an existing, formatted log dir)")
		}
		opts.LogDir = t.TempDir()
	} else {
		abs, err := filepath.Abs(opts.LogDir)
		if err != nil {
			return nil, err
		}
		opts.LogDir = abs
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, err
		}
	}

	meta, metaErr := ReadMetaProperties(opts.LogDir)
	if opts.SkipFormat {
		if metaErr != nil {
			return nil, fmt.Errorf("SkipFormat: log dir %s is not formatted: %v", opts.LogDir, metaErr)
		}
		// A booted dir has the metadata log; a formatted but never booted one has only the
		// bootstrap metadata (3.x: bootstrap.checkpoint; 4.x: inside __cluster_metadata-0).
		_, errLog := os.Stat(filepath.Join(opts.LogDir, "__cluster_metadata-0"))
		_, errBoot := os.Stat(filepath.Join(opts.LogDir, "bootstrap.checkpoint"))
		if errLog != nil && errBoot != nil {
			return nil, fmt.Errorf("SkipFormat: log dir %s has neither __cluster_metadata-0 nor bootstrap.checkpoint: not a KRaft log dir", opts.LogDir)
		}
		if v := meta["version"]; v != "1" {
			return nil, fmt.Errorf("SkipFormat: %s/meta.properties has version=%q, want 1 (KRaft)", opts.LogDir, v)
		}
		cid := meta["cluster.id"]
		if opts.ClusterID == "" {
			opts.ClusterID = cid
		} else if opts.ClusterID != cid {
			return nil, fmt.Errorf("SkipFormat: Options.ClusterID %q differs from cluster.id %q in %s/meta.properties", opts.ClusterID, cid, opts.LogDir)
		}
		nid, err := strconv.ParseInt(meta["node.id"], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("SkipFormat: bad node.id %q in %s/meta.properties", meta["node.id"], opts.LogDir)
		}
		if opts.NodeID == 0 {
			opts.NodeID = int32(nid)
		} else if opts.NodeID != int32(nid) {
			return nil, fmt.Errorf("SkipFormat: Options.NodeID %d differs from node.id %d in %s/meta.properties", opts.NodeID, nid, opts.LogDir)
		}
	} else {
		if metaErr == nil {
			return nil, fmt.Errorf("log dir %s is already formatted (meta.properties exists); set SkipFormat to boot on it", opts.LogDir)
		}
		if opts.ClusterID == "" {
			opts.ClusterID = NewClusterID()
		}
		if opts.NodeID == 0 {
			opts.NodeID = 1
		}
	}
	if err := ValidClusterID(opts.ClusterID); err != nil {
		return nil, err
	}
	if opts.NodeID < 0 {
		return nil, fmt.Errorf("negative node id %d", opts.NodeID)
	}

	work := t.TempDir()
	return &Broker{
		Version:   opts.Version,
		ClusterID: opts.ClusterID,
		NodeID:    opts.NodeID,
		opts:      opts,
		libs:      libs,
		java:      java,
		logDir:    opts.LogDir,
		workDir:   work,
		logPath:   filepath.Join(work, "broker.log"),
		propsPath: filepath.Join(work, "server.properties"),
	}, nil
}

// boot formats the log dir (unless SkipFormat), then launches the broker and waits for it.
// A bind race on the chosen ports is retried with new ports.
func (b *Broker) boot() error {
	deadline := time.Now().Add(b.opts.StartTimeout)
	formatted := b.opts.SkipFormat
	const attempts = 3
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		b.controllerAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		if err := b.writeProps(); err != nil {
			return err
		}
		if !formatted {
			if err := b.format(deadline); err != nil {
				return err
			}
			formatted = true
		}
		err = b.launch(deadline)
		if err == nil {
			return nil
		}
		if attempt < attempts && errors.Is(err, errBind) {
			continue
		}
		return err
	}
}

var errBind = errors.New("address already in use")

// freePorts reserves n distinct free TCP ports on 127.0.0.1 (released before returning; the
// broker may still lose a race for them, which boot retries).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserving a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (b *Broker) serverProps() map[string]string {
	p := DefaultProps(b.Version)
	if n := b.opts.SegmentBytes; n > 0 && (majorVersion(b.Version) < 4 || n >= MinSegmentBytes4x) {
		p["log.segment.bytes"] = strconv.Itoa(n)
	}
	for k, v := range b.opts.Props {
		p[k] = v
	}
	id := strconv.Itoa(int(b.NodeID))
	p["process.roles"] = "broker,controller"
	p["node.id"] = id
	// A static voter set works on 3.9 and 4.x alike, needs no --standalone at format time and,
	// unlike a dynamic (KIP-853) quorum, stores no controller endpoint in the metadata log, so
	// the log dir can be rebooted on other ports (restart, restore).
	p["controller.quorum.voters"] = id + "@" + b.controllerAddr
	if b.voters != "" {
		p["controller.quorum.voters"] = b.voters
	}
	p["controller.listener.names"] = "CONTROLLER"
	p["listeners"] = "PLAINTEXT://" + b.addr + ",CONTROLLER://" + b.controllerAddr
	p["advertised.listeners"] = "PLAINTEXT://" + b.addr
	p["listener.security.protocol.map"] = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
	p["inter.broker.listener.name"] = "PLAINTEXT"
	p["log.dirs"] = b.logDir
	return p
}

func (b *Broker) writeProps() error {
	p := b.serverProps()
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# written by segvault internal/kafkatest for Kafka %s\n", b.Version)
	for _, k := range keys {
		fmt.Fprintf(&buf, "%s=%s\n", propEscape(k, true), propEscape(p[k], false))
	}
	return os.WriteFile(b.propsPath, buf.Bytes(), 0o644)
}

// propEscape escapes a string for a Java .properties file.
func propEscape(s string, key bool) string {
	var sb strings.Builder
	for i, r := range s {
		switch {
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case key && (r == '=' || r == ':' || r == ' ' || r == '#' || r == '!'):
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case !key && i == 0 && r == ' ':
			sb.WriteString(`\ `)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// loggingOpts configure slf4j-simple (the only slf4j binding in the libs dir, see pom.xml).
func loggingOpts(level string) []string {
	return []string{
		"-Dorg.slf4j.simpleLogger.logFile=System.err",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=" + level,
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
		// The full config dumps ("KafkaConfig values: ...") are thousands of lines; the
		// effective config is in server.properties next to the log.
		"-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
		"-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaConfig=warn", // 3.x logs its dump here
		"-Dorg.slf4j.simpleLogger.log.state.change.logger=warn",
	}
}

// classpath lists the jars of dir, sorted (a "dir/*" wildcard has no defined order).
func classpath(dir string) (string, error) {
	jars, err := filepath.Glob(filepath.Join(dir, "*.jar"))
	if err != nil {
		return "", err
	}
	if len(jars) == 0 {
		return "", fmt.Errorf("no jars in %s", dir)
	}
	sort.Strings(jars)
	return strings.Join(jars, string(os.PathListSeparator)), nil
}

// format runs Kafka's own StorageTool from the same jars.
func (b *Broker) format(deadline time.Time) error {
	cp, err := classpath(b.libs)
	if err != nil {
		return err
	}
	cds, _ := cdsArgs(b.java, b.Version, b.libs, b.opts.JavaOpts, false)
	args := slices.Concat(b.opts.JavaOpts, cds, loggingOpts("warn"), []string{
		"-cp", cp, "kafka.tools.StorageTool",
		"format", "-t", b.ClusterID, "-c", b.propsPath,
	})
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.java, args...)
	cmd.Dir = b.workDir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(b.workDir, "format.log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("kafka.tools.StorageTool format -t %s -c %s: %v\n%s", b.ClusterID, b.propsPath, err, bytes.TrimSpace(out))
	}
	if _, err := os.Stat(filepath.Join(b.logDir, "meta.properties")); err != nil {
		return fmt.Errorf("StorageTool format succeeded but wrote no meta.properties: %v\n%s", err, bytes.TrimSpace(out))
	}
	return nil
}

// launch starts kafka.Kafka and waits until it serves metadata listing this node.
func (b *Broker) launch(deadline time.Time) error {
	cp, err := classpath(b.libs)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child keeps its own descriptor
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "=== kafkatest: starting Kafka %s node %d, PLAINTEXT %s, CONTROLLER %s, log dir %s\n",
		b.Version, b.NodeID, b.addr, b.controllerAddr, b.logDir)
	cds, plan := cdsArgs(b.java, b.Version, b.libs, b.opts.JavaOpts, true)
	args := slices.Concat(loggingOpts("info"), b.opts.JavaOpts, cds, []string{"-cp", cp, "kafka.Kafka", b.propsPath})
	cmd := exec.Command(b.java, args...)
	cmd.Dir = b.workDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting java: %w", err)
	}
	b.cmd = cmd
	b.cdsDump = plan != nil
	b.done = make(chan struct{})
	go func() {
		err := cmd.Wait()
		code := exitCode(err)
		plan.commit(code == 0 || code == 143) // 143: exit after SIGTERM and shutdown hooks
		b.waitErr = err
		close(b.done)
	}()

	err = b.waitReady(deadline)
	if err == nil {
		return nil
	}
	// Not ready: make sure the process is gone before reporting (and before a retry).
	select {
	case <-b.done:
	default:
		b.signal(sigKill)
		<-b.done
	}
	if logHas(b.logPath, logStart, "Address already in use") {
		return fmt.Errorf("%w: %v", errBind, err)
	}
	return err
}

// logHas reports whether the log, from byte offset from on, contains s.
func logHas(path string, from int64, s string) bool {
	data, err := os.ReadFile(path)
	if err != nil || from > int64(len(data)) {
		return false
	}
	return bytes.Contains(data[from:], []byte(s))
}

// waitReady polls the broker with Metadata requests until it lists this node (i.e. the broker
// is registered and unfenced), the process exits, or the deadline passes.
func (b *Broker) waitReady(deadline time.Time) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.addr),
		kgo.DialTimeout(time.Second),
		kgo.RequestRetries(0),
		kgo.RetryTimeout(time.Second),
		kgo.MetadataMinAge(10*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	var last error = errors.New("no answer yet")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-b.done:
			return fmt.Errorf("broker exited during startup (%v); last probe: %v", b.waitErr, last)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker not ready after %v: %v", b.opts.StartTimeout, last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = probe(ctx, cl, b.NodeID)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-b.done:
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, cl *kgo.Client, node int32) error {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, br := range resp.Brokers {
		if br.NodeID == node {
			return nil
		}
	}
	return fmt.Errorf("metadata does not list node %d yet (brokers: %d)", node, len(resp.Brokers))
}

// Addr is the PLAINTEXT bootstrap address, host:port.
func (b *Broker) Addr() string { return b.addr }

// ControllerAddr is the CONTROLLER listener address, host:port.
func (b *Broker) ControllerAddr() string { return b.controllerAddr }

// LogDir is the broker's log.dirs directory.
func (b *Broker) LogDir() string { return b.logDir }

// PartitionDir is LogDir()/<topic>-<partition>.
func (b *Broker) PartitionDir(topic string, partition int32) string {
	return filepath.Join(b.logDir, fmt.Sprintf("%s-%d", topic, partition))
}

// LogPath is the file receiving the broker's stdout and stderr (its logs).
func (b *Broker) LogPath() string { return b.logPath }

// PropsPath is the server.properties file the broker was started with.
func (b *Broker) PropsPath() string { return b.propsPath }

// Options returns the resolved options the broker was started with.
func (b *Broker) Options() Options { return b.opts }

// ReadLog returns the broker log so far.
func (b *Broker) ReadLog() (string, error) {
	data, err := os.ReadFile(b.logPath)
	return string(data), err
}

// LogTail returns the last n lines of the broker log (or an error note).
func (b *Broker) LogTail(n int) string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read broker log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Running reports whether the broker process is still alive.
func (b *Broker) Running() bool {
	if b.done == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// Stop shuts the broker down gracefully (SIGTERM to its process group), waits up to
// Options.StopTimeout and then SIGKILLs it. It returns an error if the shutdown was not clean
// (timeout, bad exit status, no .kafka_cleanshutdown marker) or if the broker had already died
// on its own. Stop is idempotent: later calls (and calls after Kill) return the first result.
func (b *Broker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return b.stopErr
	}
	b.stopped = true
	if b.done == nil {
		return nil
	}
	select {
	case <-b.done:
		b.stopErr = fmt.Errorf("kafka %s broker at %s had already exited on its own: %v (log: %s)", b.Version, b.addr, b.waitErr, b.logPath)
		return b.stopErr
	default:
	}
	start := time.Now()
	timeout := b.opts.StopTimeout
	if b.cdsDump {
		timeout += cdsDumpGrace
	}
	b.signal(sigTerm)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-b.done:
	case <-timer.C:
		b.signal(sigKill)
		<-b.done
		b.stopErr = fmt.Errorf("kafka %s broker at %s did not stop within %v of SIGTERM; killed (log: %s)", b.Version, b.addr, timeout, b.logPath)
		return b.stopErr
	}
	// The JVM exits 143 (128+SIGTERM) after running its shutdown hooks.
	if code := exitCode(b.waitErr); code != 0 && code != 143 {
		b.stopErr = fmt.Errorf("kafka %s broker at %s exited with %v on SIGTERM (log: %s)", b.Version, b.addr, b.waitErr, b.logPath)
		return b.stopErr
	}
	if _, err := os.Stat(filepath.Join(b.logDir, ".kafka_cleanshutdown")); err != nil {
		b.stopErr = fmt.Errorf("kafka %s broker at %s stopped without writing %s/.kafka_cleanshutdown: unclean shutdown (log: %s)", b.Version, b.addr, b.logDir, b.logPath)
		return b.stopErr
	}
	note := ""
	if b.cdsDump {
		note = " (including the CDS archive dump)"
	}
	b.logf("=== kafkatest: stopped cleanly in %v%s\n", time.Since(start).Round(time.Millisecond), note)
	return nil
}

// Kill SIGKILLs the broker (a crash: no clean-shutdown marker, no final checkpoints) and waits
// for it to exit. Idempotent; a later Stop returns nil.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.done == nil {
		b.stopped = true
		return
	}
	b.stopped = true
	b.signal(sigKill)
	<-b.done
	b.logf("=== kafkatest: killed (SIGKILL)\n")
}

func (b *Broker) logf(format string, args ...any) {
	f, err := os.OpenFile(b.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format, args...)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode() // -1 if killed by a signal
	}
	return -1
}

// Restart stops this broker (if still running) and starts a new broker process of the same
// version, node id, cluster id, props and log dir, without formatting. It fails the test if the
// stop was not clean, unless the broker had been Kill()ed (crash-restart).
func (b *Broker) Restart(t testing.TB) *Broker {
	t.Helper()
	if err := b.Stop(); err != nil {
		t.Fatalf("kafkatest: restart: %v", err)
	}
	o := b.opts
	o.LogDir = b.logDir
	o.SkipFormat = true
	return Start(t, o)
}

// Client returns a franz-go client bootstrapped at this broker; it is closed when the test ends.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, []string{b.addr}, opts)
}

// newClient is a franz-go client on seeds, closed when the test ends.
func newClient(t testing.TB, seeds []string, opts []kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatalf("kafkatest: kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// topicConfigs is configs as kadm wants them, plus the version's segment
// size config for segmentBytes > 0 unless configs sets one.
func topicConfigs(configs map[string]string, version string, segmentBytes int) map[string]*string {
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	if segmentBytes > 0 {
		_, a := cfg["segment.bytes"]
		_, b := cfg["internal.segment.bytes"]
		if !a && !b {
			cfg[TopicSegmentBytesKey(version, segmentBytes)] = kadm.StringPtr(strconv.Itoa(segmentBytes))
		}
	}
	return cfg
}

// Admin returns a kadm client on a fresh Client (closed when the test ends).
func (b *Broker) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(b.Client(t))
}

// CreateTopic creates a topic with replication factor 1 and waits until every partition has a
// leader. Options.SegmentBytes, when set, is added as the version's segment size config (see
// TopicSegmentBytesKey) unless configs sets one. It fails the test on any error.
func (b *Broker) CreateTopic(t testing.TB, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	cfg := topicConfigs(configs, b.Version, b.opts.SegmentBytes)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
	if err != nil {
		t.Fatalf("kafkatest: kgo.NewClient: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, cfg, topic)
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
		t.Fatalf("kafkatest: create topic %q (%d partitions, configs %v): %v", topic, partitions, cfg2str(cfg), err)
	}
	if err := waitLeaders(ctx, cl, topic, partitions); err != nil {
		t.Fatalf("kafkatest: topic %q: %v", topic, err)
	}
}

func cfg2str(cfg map[string]*string) string {
	parts := make([]string, 0, len(cfg))
	for k, v := range cfg {
		if v == nil {
			parts = append(parts, k+"=<nil>")
		} else {
			parts = append(parts, k+"="+*v)
		}
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

func waitLeaders(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	var last error
	for {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		last = err
		if err == nil {
			last = leadersReady(resp, topic, partitions)
			if last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partitions without leader: %v (%w)", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func leadersReady(resp *kmsg.MetadataResponse, topic string, partitions int32) error {
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if t.ErrorCode != 0 {
			return fmt.Errorf("metadata error code %d", t.ErrorCode)
		}
		if int32(len(t.Partitions)) != partitions {
			return fmt.Errorf("%d of %d partitions in metadata", len(t.Partitions), partitions)
		}
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.Leader < 0 {
				return fmt.Errorf("partition %d: leader %d, error code %d", p.Partition, p.Leader, p.ErrorCode)
			}
		}
		return nil
	}
	return errors.New("topic not in metadata yet")
}

// SegmentFiles returns the sorted paths of the *.log segment files of a partition directory
// (<LogDir>/<topic>-<partition>). The last one is the active segment.
func SegmentFiles(partitionDir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(partitionDir, "*.log"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files) // 20-digit zero-padded base offsets sort numerically
	return files, nil
}
