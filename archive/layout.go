package archive

import (
	"fmt"
	"strings"
	"time"
)

// LayoutVersion is the first key element of every archive-format-v1 object.
// Bump it (and write a reader for both) only for incompatible layout changes.
const LayoutVersion = "v1"

// ManifestName is the file name of a segment manifest, the commit marker.
const ManifestName = "manifest.json"

// Layout builds object keys (docs/FORMAT.md, "Keys"); ParseKey parses the
// keys of both layout versions:
//
//	<prefix>v1/<cluster>/topics/<topic>/<partition>/<topic-id>/segments/<base>/<broker>-<sha12>/manifest.json
//	<prefix>v1/<cluster>/topics/<topic>/<partition>/<topic-id>/segments/<base>/<broker>-<sha12>/<file>[.zst][.enc]
//	<prefix>v1/<cluster>/brokers/<broker>/logdirs/<dir>/<capture-time>.json
//
// One listing of .../topics/<topic>/<partition>/ returns every incarnation
// (topic id), every replica (broker) and every version (content hash) of every
// segment of a partition. Keys sort by base offset within an incarnation.
type Layout struct {
	Prefix string // "" or ends with "/"
}

// NewLayout normalises prefix.
func NewLayout(prefix string) Layout {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return Layout{Prefix: prefix}
}

// SegmentRef names one archived version of one segment.
type SegmentRef struct {
	Cluster    string
	Topic      string
	Partition  int32
	TopicID    string // NoTopicID when the partition has no partition.metadata
	BaseOffset int64
	Broker     int32
	ContentID  string // first 12 hex digits of the .log's SHA-256
}

// NoTopicID stands for a partition without partition.metadata (Kafka < 2.8).
const NoTopicID = "no-topic-id"

// Root is the prefix of every v1 object.
func (l Layout) Root() string { return l.Prefix + LayoutVersion + "/" }

// ClusterPrefix lists one cluster.
func (l Layout) ClusterPrefix(cluster string) string { return l.Root() + cluster + "/" }

// TopicsPrefix lists every topic of a cluster.
func (l Layout) TopicsPrefix(cluster string) string { return l.ClusterPrefix(cluster) + "topics/" }

// PartitionPrefix lists every archived object of one partition.
func (l Layout) PartitionPrefix(cluster, topic string, partition int32) string {
	return fmt.Sprintf("%s%s/%d/", l.TopicsPrefix(cluster), topic, partition)
}

// SegmentDir is the common prefix of a segment version's objects.
func (l Layout) SegmentDir(r SegmentRef) string {
	return fmt.Sprintf("%s%s/segments/%020d/%d-%s/", l.PartitionPrefix(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, r.Broker, r.ContentID)
}

// SnapshotDir is the common prefix of an archived KRaft snapshot
// (<offset>-<epoch>.checkpoint of __cluster_metadata).
func (l Layout) SnapshotDir(r SegmentRef, epoch int32) string {
	return fmt.Sprintf("%s%s/snapshots/%020d-%010d/%d-%s/", l.PartitionPrefix(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, epoch, r.Broker, r.ContentID)
}

// GapKey records a segment lost before it could be archived.
func (l Layout) GapKey(r SegmentRef) string {
	return fmt.Sprintf("%s%s/gaps/%020d-%d.json", l.PartitionPrefix(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, r.Broker)
}

// ManifestKey is the commit marker of a segment version.
func (l Layout) ManifestKey(r SegmentRef) string { return l.SegmentDir(r) + ManifestName }

// DataKey is the object holding one file of a segment version.
func (l Layout) DataKey(r SegmentRef, file, ext string) string { return l.SegmentDir(r) + file + ext }

// LogDirKey is the object holding a capture of a log dir's root files.
func (l Layout) LogDirKey(cluster string, broker int32, dir string, at time.Time) string {
	return fmt.Sprintf("%s%s/brokers/%d/logdirs/%s/%s.json", l.Root(), cluster, broker, dir, at.UTC().Format(CaptureTimeFormat))
}

// LogDirPrefix lists the captures of one broker's log dirs.
func (l Layout) LogDirPrefix(cluster string, broker int32) string {
	return fmt.Sprintf("%s%s/brokers/%d/logdirs/", l.Root(), cluster, broker)
}

// CaptureTimeFormat sorts lexically in time order.
const CaptureTimeFormat = "20060102T150405.000000000Z"
