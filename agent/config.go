// Package agent is segvault's archiver daemon. It discovers a broker's log
// dirs, watches them (fsnotify as a hint, a periodic rescan as the truth),
// decides when a segment has rolled and settled, protects it from retention
// with a hard link, validates it, uploads its files and then its manifest
// (the commit marker), and records what it archived in crash-safe local
// state. It never writes into a Kafka log dir and never archives the active
// segment.
package agent

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/segvault/segvault/archive"
)

// Tail-capture defaults and bounds (Config.TailInterval, TailMaxBytes).
const (
	DefaultTailInterval = 60 * time.Second
	DefaultTailMaxBytes = 16 << 20
	// MinTailInterval is the shortest tail-interval accepted.
	MinTailInterval = time.Second
	// tailMinGap: captures triggered early by TailMaxBytes never follow
	// each other closer than this (or TailInterval when shorter).
	tailMinGap = 5 * time.Second
)

// tailOn reports whether tail capture is enabled ("on" or unset).
func (c *Config) tailOn() bool { return c.TailCapture != "off" && c.TailCapture != "false" }

// tailInterval and tailMaxBytes apply the defaults to unset (zero) values.
func (c *Config) tailInterval() time.Duration {
	if c.TailInterval <= 0 {
		return DefaultTailInterval
	}
	return c.TailInterval
}

func (c *Config) tailMaxBytes() int64 {
	if c.TailMaxBytes <= 0 {
		return DefaultTailMaxBytes
	}
	return c.TailMaxBytes
}

// Config is everything the agent needs. cmd/segvault fills it from flags,
// the environment and the config file; Validate names the bad option.
type Config struct {
	// LogDirs to archive. Empty: taken from ServerProperties.
	LogDirs []string `yaml:"log_dirs"`
	// ServerProperties is the broker's server.properties, read for log.dirs
	// and node.id/broker.id when they are not given.
	ServerProperties string `yaml:"server_properties"`
	// ClusterID and BrokerID override meta.properties (BrokerID -1: read it).
	ClusterID string `yaml:"cluster_id"`
	BrokerID  int32  `yaml:"broker_id"`

	// Bucket is a store URL: file:///var/lib/segvault/archive or s3://bucket.
	Bucket string `yaml:"bucket"`
	Prefix string `yaml:"prefix"`

	// StateDir holds the local state and the staging hard links. It must be
	// on the same filesystem as the log dirs for staging to work.
	StateDir string `yaml:"state_dir"`

	IncludeTopics []string `yaml:"include_topics"` // regular expressions; empty = all
	ExcludeTopics []string `yaml:"exclude_topics"`

	ScanInterval  time.Duration `yaml:"scan_interval"`  // full rescan period
	SettleTime    time.Duration `yaml:"settle_time"`    // files unchanged this long before upload
	Concurrency   int           `yaml:"concurrency"`    // segments shipped at once
	DeepValidate  bool          `yaml:"deep_validate"`  // decompress and parse every record
	Compression   string        `yaml:"compression"`    // auto, zstd or none
	ZstdLevel     int           `yaml:"zstd_level"`     // 1 (fastest) .. 4 (best)
	ReadBytesPerS int64         `yaml:"read_bandwidth"` // disk read limit, 0 = none
	StagingBudget int64         `yaml:"staging_budget"` // bytes of hard-linked segments kept for retention protection; 0 disables staging
	DrainTimeout  time.Duration `yaml:"drain_timeout"`  // SIGTERM: wait this long for in-flight uploads
	DropCache     bool          `yaml:"drop_cache"`     // drop page-cache pages the agent itself brought in
	LowPriority   bool          `yaml:"low_priority"`   // nice 10 and idle I/O class
	// IncludeActive also archives each partition's last (active) segment.
	// Only for a stopped broker (salvaging a dead broker's disk, archiving a
	// decommissioned one): the agent refuses while a broker holds the log
	// dir's .lock.
	IncludeActive bool `yaml:"include_active"`

	// Tail capture (docs/FORMAT.md, "Tail captures"): the complete batches
	// appended to every partition's active segment are uploaded every
	// TailInterval (sooner once TailMaxBytes have accumulated), all
	// partitions of the broker in one pack object per round. TailCapture
	// is "on" (default) or "off".
	TailCapture  string        `yaml:"tail_capture"`
	TailInterval time.Duration `yaml:"tail_interval"`
	TailMaxBytes int64         `yaml:"tail_max_bytes"`
	// EncryptionKey, when set, seals tail-capture chunks (the same key the
	// archive's files are encrypted with). Not a config-file key.
	EncryptionKey *archive.Key `yaml:"-"`
	// ArchiveReplicas is who archives a partition (issue 16): "all" (or
	// empty: every replica's agent archives its own copy) or "designated"
	// (one copy per partition: the leader per the KRaft metadata log on
	// this broker's disk, else the first live replica, else a claim in the
	// bucket; a standby replica archives its own segments only when the
	// archive lacks their offsets for longer than TakeoverGrace).
	ArchiveReplicas string `yaml:"archive_replicas"`
	// MetadataLogDir is the directory holding __cluster_metadata-0 (Kafka's
	// metadata.log.dir). Empty: looked for in the log dirs.
	MetadataLogDir string `yaml:"metadata_log_dir"`
	// ClaimTTL is how long a partition claim (clusters without a metadata
	// log) stays valid unrenewed; owners renew every ClaimTTL/3.
	ClaimTTL time.Duration `yaml:"claim_ttl"`
	// TakeoverGrace: 0 means TakeoverGrace(SettleTime, ScanInterval).
	TakeoverGrace time.Duration `yaml:"takeover_grace"`
}

// Values of Config.ArchiveReplicas.
const (
	ArchiveReplicasAll        = "all"
	ArchiveReplicasDesignated = "designated"
)

// Defaults returns a Config with every default set.
func Defaults() Config {
	return Config{
		BrokerID:      -1,
		ScanInterval:  30 * time.Second,
		SettleTime:    5 * time.Second,
		Concurrency:   2,
		Compression:   "auto",
		ZstdLevel:     1,
		StagingBudget: 10 << 30,
		DrainTimeout:  60 * time.Second,
		DropCache:     true,
		LowPriority:   true,
		TailCapture:   "on",
		TailInterval:  DefaultTailInterval,
		TailMaxBytes:  DefaultTailMaxBytes,

		ArchiveReplicas: ArchiveReplicasDesignated,
		ClaimTTL:        15 * time.Minute,
	}
}

// Validate checks the config and names the option at fault.
func (c *Config) Validate() error {
	var errs []error
	if len(c.LogDirs) == 0 && c.ServerProperties == "" {
		errs = append(errs, errors.New("log-dirs: give at least one log dir, or server-properties to read log.dirs from"))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket: a store URL is required (file:///path or s3://bucket)"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("state-dir: required"))
	}
	for _, o := range []struct {
		name     string
		patterns []string
	}{{"include-topics", c.IncludeTopics}, {"exclude-topics", c.ExcludeTopics}} {
		for _, s := range o.patterns {
			if _, err := topicRegexp(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: %v", o.name, s, err))
			}
		}
	}
	if c.ScanInterval <= 0 {
		errs = append(errs, errors.New("scan-interval: must be positive"))
	}
	if c.SettleTime < 0 {
		errs = append(errs, errors.New("settle-time: must not be negative"))
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		errs = append(errs, errors.New("concurrency: must be 1..64"))
	}
	switch c.Compression {
	case "auto", "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("compression: %q is not auto, zstd or none", c.Compression))
	}
	if c.ZstdLevel < 1 || c.ZstdLevel > 4 {
		errs = append(errs, errors.New("zstd-level: must be 1..4"))
	}
	switch c.TailCapture {
	case "on", "off", "", "true", "false": // YAML reads a bare on/off as a boolean
	default:
		errs = append(errs, fmt.Errorf("tail-capture: %q is not on or off", c.TailCapture))
	}
	if c.TailInterval < 0 || (c.TailInterval > 0 && c.TailInterval < MinTailInterval) {
		errs = append(errs, fmt.Errorf("tail-interval: must be at least %s", MinTailInterval))
	}
	if c.TailMaxBytes < 0 || (c.TailMaxBytes > 0 && c.TailMaxBytes < 1<<20) {
		errs = append(errs, errors.New("tail-max-bytes: must be at least 1 MiB (1048576)"))
	}
	switch c.ArchiveReplicas {
	case "", ArchiveReplicasAll:
	case ArchiveReplicasDesignated:
		if c.ClaimTTL < 3*c.ScanInterval {
			errs = append(errs, fmt.Errorf("claim-ttl: %v must be at least 3 scan intervals (%v): owners renew claims once per scan", c.ClaimTTL, 3*c.ScanInterval))
		}
		if c.TakeoverGrace < 0 {
			errs = append(errs, errors.New("takeover-grace: must not be negative"))
		}
	default:
		errs = append(errs, fmt.Errorf("archive-replicas: %q is not all or designated", c.ArchiveReplicas))
	}
	if c.ReadBytesPerS < 0 || c.StagingBudget < 0 {
		errs = append(errs, errors.New("read-bandwidth/staging-budget: must not be negative"))
	}
	return errors.Join(errs...)
}

// topicRegexp compiles a topic pattern exactly as the filter uses it: the
// whole topic name must match. Validate checks the same string, so a
// pattern that only compiles unanchored (`\Qa` quotes the closing paren)
// is a configuration error, not a panic.
func topicRegexp(s string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + s + ")$")
	if err != nil {
		// Report the user's pattern, not our wrapping.
		if _, err2 := regexp.Compile(s); err2 != nil {
			return nil, err2
		}
		return nil, fmt.Errorf("cannot be anchored as ^(?:...)$ to match whole topic names: %v", err)
	}
	return re, nil
}

// snapshot is the configuration in force: immutable once published. A
// reload (SIGHUP) builds a new one and swaps it in atomically; every
// operation (a pass, a shipment) takes the snapshot once and reads only it.
type snapshot struct {
	Config
	filter topicFilter
}

func newSnapshot(c Config) *snapshot {
	c.IncludeTopics = append([]string(nil), c.IncludeTopics...)
	c.ExcludeTopics = append([]string(nil), c.ExcludeTopics...)
	return &snapshot{Config: c, filter: newTopicFilter(&c)}
}

// snap returns the configuration in force.
func (a *Agent) snap() *snapshot {
	if s := a.live.Load(); s != nil {
		return s
	}
	return newSnapshot(a.cfg) // an Agent built without New (tests)
}

// topicFilter applies IncludeTopics and ExcludeTopics.
type topicFilter struct{ include, exclude []*regexp.Regexp }

// newTopicFilter builds the filter of a validated config. It never panics:
// a pattern that does not compile (Validate rejects it first) includes no
// topic and excludes every topic, the safe reading of a broken filter.
func newTopicFilter(c *Config) topicFilter {
	var f topicFilter
	for _, s := range c.IncludeTopics {
		if re, err := topicRegexp(s); err == nil {
			f.include = append(f.include, re)
		} else {
			f.include = append(f.include, matchNothing)
		}
	}
	for _, s := range c.ExcludeTopics {
		if re, err := topicRegexp(s); err == nil {
			f.exclude = append(f.exclude, re)
		} else {
			f.exclude = append(f.exclude, matchAll)
		}
	}
	return f
}

var (
	matchNothing = regexp.MustCompile(`[^\x00-\x{10FFFF}]`)
	matchAll     = regexp.MustCompile(``)
)

func (f topicFilter) match(topic string) bool {
	for _, re := range f.exclude {
		if re.MatchString(topic) {
			return false
		}
	}
	if len(f.include) == 0 {
		return true
	}
	for _, re := range f.include {
		if re.MatchString(topic) {
			return true
		}
	}
	return false
}
