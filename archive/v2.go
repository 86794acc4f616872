package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Archive format v2 (docs/FORMAT.md, "Format v2"). Everything the agent writes
// goes under <prefix>v2/; v1 objects under <prefix>v1/ stay readable.
//
// A v2 data file is stored as a sequence of independently decodable chunks:
// each chunk is RawSize bytes of the file, compressed as one zstd frame (or
// stored as-is) and, with client-side encryption, sealed as one complete
// aes-256-gcm-stream-v1 message. A chunk can live in the file's own object
// (FileRecord.DataKey) or in another object (a tail-capture pack), so a
// segment's chunks can be uploaded at different times.
const (
	LayoutVersionV2   = "v2"
	ManifestVersionV2 = 2
	// DefaultChunkSize is the raw size of a chunk (the last may be shorter).
	DefaultChunkSize = 4 << 20
)

// Chunk is one independently decodable piece of a stored file: the RawSize
// bytes that follow the previous chunk's in the raw file, stored as
// StoredSize bytes at Offset of object Key ("" means FileRecord.DataKey).
type Chunk struct {
	Key         string `json:"key,omitempty"`
	Offset      int64  `json:"offset"`
	StoredSize  int64  `json:"stored_size"`
	RawSize     int64  `json:"raw_size"`
	CRC32C      string `json:"crc32c"`     // hex CRC-32C of the stored bytes
	RawCRC32C   string `json:"raw_crc32c"` // hex CRC-32C of the raw bytes
	Compression string `json:"compression"`
	Encryption  string `json:"encryption,omitempty"`
	KeyID       string `json:"key_id,omitempty"`
}

// UploadID names one v2 upload of a file without reading it: a digest of
// the identity of the file as the agent saw it (its path in the archive,
// size, modification time and inode). A retried upload of the same file
// state reuses the same keys; a different file state (a cleaner rewrite, a
// truncation) gets new ones. Two ids never collide in practice (64 bits).
func UploadID(r SegmentRef, file string, size int64, mtime time.Time, inode uint64) string {
	h := sha256.New()
	fmt.Fprintf(h, "segvault-v2-upload\x00%s\x00%s\x00%d\x00%s\x00%d\x00%d\x00%s\x00%d\x00%d\x00%d",
		r.Cluster, r.Topic, r.Partition, r.TopicID, r.BaseOffset, r.Broker, file, size, mtime.UnixNano(), inode)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// RootV2 is the prefix of every v2 object.
func (l Layout) RootV2() string { return l.Prefix + LayoutVersionV2 + "/" }

// PartitionPrefixV2 lists every v2 object of one partition.
func (l Layout) PartitionPrefixV2(cluster, topic string, partition int32) string {
	return fmt.Sprintf("%s%s/topics/%s/%d/", l.RootV2(), cluster, topic, partition)
}

// SegmentDirV2 is the common prefix of a v2 segment version's objects; ref's
// ContentID field carries the UploadID.
func (l Layout) SegmentDirV2(r SegmentRef) string {
	return fmt.Sprintf("%s%s/segments/%020d/%d-%s/", l.PartitionPrefixV2(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, r.Broker, r.ContentID)
}

// SnapshotDirV2 is the common prefix of a v2 KRaft snapshot's objects.
func (l Layout) SnapshotDirV2(r SegmentRef, epoch int32) string {
	return fmt.Sprintf("%s%s/snapshots/%020d-%010d/%d-%s/", l.PartitionPrefixV2(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, epoch, r.Broker, r.ContentID)
}

// DataKeyV2 is the object holding one file's own chunks.
func (l Layout) DataKeyV2(dir, file string) string { return dir + file + ".sv2" }

// GapKeyV2 records a segment lost before it could be archived.
func (l Layout) GapKeyV2(r SegmentRef) string {
	return fmt.Sprintf("%s%s/gaps/%020d-%d.json", l.PartitionPrefixV2(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, r.Broker)
}

// DivergenceKey records that broker r.Broker's replica of the segment at
// r.BaseOffset differs from the archived copy (a standby's cross-replica
// check, docs/FORMAT.md "Divergence report").
func (l Layout) DivergenceKey(r SegmentRef) string {
	return fmt.Sprintf("%s%s/divergences/%020d-%d.json", l.PartitionPrefixV2(r.Cluster, r.Topic, r.Partition), r.TopicID, r.BaseOffset, r.Broker)
}

// LogDirKeyV2 is a capture of a log dir's root files.
func (l Layout) LogDirKeyV2(cluster string, broker int32, dir string, at time.Time) string {
	return fmt.Sprintf("%s%s/brokers/%d/logdirs/%s/%s.json", l.RootV2(), cluster, broker, dir, at.UTC().Format(CaptureTimeFormat))
}

// BrokerPrefixV2 lists one broker's v2 objects (log-dir captures, tail packs).
func (l Layout) BrokerPrefixV2(cluster string, broker int32) string {
	return fmt.Sprintf("%s%s/brokers/%d/", l.RootV2(), cluster, broker)
}

// TailPackKey is a tail-capture pack (the new bytes of many partitions'
// active segments, as chunks) and TailManifestKey its commit marker; seq
// increases per broker and sorts lexically.
func (l Layout) TailPackKey(cluster string, broker int32, seq int64, uid string) string {
	return fmt.Sprintf("%stails/%020d-%s.pack", l.BrokerPrefixV2(cluster, broker), seq, uid)
}

// TailManifestKey is the manifest committing the pack of TailPackKey.
func (l Layout) TailManifestKey(cluster string, broker int32, seq int64, uid string) string {
	return fmt.Sprintf("%stails/%020d-%s.json", l.BrokerPrefixV2(cluster, broker), seq, uid)
}

// ClaimKey is a partition's archiver claim (for clusters without metadata
// that settles who archives it).
func (l Layout) ClaimKey(cluster, topic string, partition int32) string {
	return fmt.Sprintf("%s%s/claims/%s/%d.json", l.RootV2(), cluster, topic, partition)
}
