package archive

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/segvault/segvault/segment"
)

// Manifest format names and the version this code writes and reads. Readers
// reject any other version: add a reader for the old one before bumping.
const (
	SegmentManifestFormat = "segvault.segment"
	LogDirManifestFormat  = "segvault.logdir"
	GapMarkerFormat       = "segvault.gap"
	DivergenceFormat      = "segvault.divergence"
	ManifestVersion       = 1 // v1; v2 manifests carry ManifestVersionV2
)

// Compression and encryption names recorded per object.
const (
	CompressionNone = "none"
	CompressionZstd = "zstd"
	EncryptionNone  = ""
)

// Manifest kinds.
const (
	KindSegment       = "segment"
	KindKRaftSnapshot = "kraft-snapshot"
)

// StoredObject is how one file is stored in the bucket.
type StoredObject struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`   // bytes in the bucket
	SHA256      string `json:"sha256"` // of the stored bytes
	CRC32C      string `json:"crc32c"` // of the stored bytes
	Compression string `json:"compression"`
	Encryption  string `json:"encryption,omitempty"` // "" or "aes-256-gcm-stream-v1"
	KeyID       string `json:"key_id,omitempty"`     // which client-side key (its fingerprint)
}

// FileRecord is one archived file: what it was on disk and how it is stored.
// A v1 record has Object (one object, one compressed/encrypted stream); a v2
// record has Chunks (independently decodable pieces, in raw order, covering
// Size) and DataKey (the object its chunks live in unless a chunk names
// another).
type FileRecord struct {
	Name    string       `json:"name"`             // file name in the partition dir, e.g. 00000000000000000000.log
	Size    int64        `json:"size"`             // raw bytes
	SHA256  string       `json:"sha256"`           // of the raw bytes
	CRC32C  string       `json:"crc32c,omitempty"` // of the raw bytes (v1)
	ModTime time.Time    `json:"mtime"`
	Object  StoredObject `json:"object,omitzero"` // v1
	DataKey string       `json:"data_key,omitempty"`
	Chunks  []Chunk      `json:"chunks,omitempty"`
}

// IsV2 reports whether the record is stored as v2 chunks.
func (f FileRecord) IsV2() bool { return f.Object.Key == "" && f.DataKey != "" }

// StoredSize is how many bytes the file takes in the bucket: its v1
// object's size, or the sum of its v2 chunks' stored sizes.
func (f FileRecord) StoredSize() int64 {
	if !f.IsV2() {
		return f.Object.Size
	}
	var n int64
	for _, c := range f.Chunks {
		n += c.StoredSize
	}
	return n
}

// PartitionState carries the small partition-dir files a rebuild needs, as
// they were when the segment was archived.
type PartitionState struct {
	CapturedAt time.Time `json:"captured_at"`
	// Raw file bytes; null when the file did not exist, "" when it was empty.
	LeaderEpochCheckpoint []byte `json:"leader_epoch_checkpoint"`
	PartitionMetadata     []byte `json:"partition_metadata"`
	QuorumState           []byte `json:"quorum_state,omitempty"` // __cluster_metadata only
}

// SegmentManifest commits one archived version of one segment. It is
// uploaded after every object it names; its presence is the commit.
type SegmentManifest struct {
	Format        string `json:"format"`
	Version       int    `json:"version"`
	ClusterID     string `json:"cluster_id"`
	BrokerID      int32  `json:"broker_id"`
	LogDir        string `json:"log_dir"`
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	TopicID       string `json:"topic_id"`
	Kind          string `json:"kind"` // KindSegment or KindKRaftSnapshot
	BaseOffset    int64  `json:"base_offset"`
	SnapshotEpoch int32  `json:"snapshot_epoch,omitempty"` // KRaft snapshots: <offset>-<epoch>.checkpoint
	// NextSegmentBase is the base offset of the segment that followed this
	// one in the partition when it was archived: the segment covers
	// [BaseOffset, NextSegmentBase). Restore checks chains with it.
	NextSegmentBase int64  `json:"next_segment_base"`
	ContentID       string `json:"content_id"` // first 12 hex digits of the .log's SHA-256
	// UploadID (v2) is the key element naming this upload (archive.UploadID).
	UploadID string `json:"upload_id,omitempty"`
	// CreatedAt (v1) is when the manifest was written; v2 manifests carry no
	// wall-clock time, so a retried commit is byte-identical, and record the
	// .log's modification time instead.
	CreatedAt      time.Time       `json:"created_at,omitzero"`
	SourceModTime  time.Time       `json:"source_mtime,omitzero"`
	Agent          string          `json:"agent"`      // "segvault <version>"
	Validation     string          `json:"validation"` // "shallow" or "deep"
	Files          []FileRecord    `json:"files"`      // the .log first
	Summary        *SegmentSummary `json:"summary"`
	PartitionState *PartitionState `json:"partition_state,omitempty"`
}

// Ref is the manifest's SegmentRef.
func (m *SegmentManifest) Ref() SegmentRef {
	return SegmentRef{Cluster: m.ClusterID, Topic: m.Topic, Partition: m.Partition, TopicID: m.TopicID,
		BaseOffset: m.BaseOffset, Broker: m.BrokerID, ContentID: m.ContentID}
}

// Time orders versions of one segment: when the manifest was written (v1)
// or, for v2 manifests, which carry no wall-clock time, the .log's
// modification time.
func (m *SegmentManifest) Time() time.Time {
	if !m.CreatedAt.IsZero() {
		return m.CreatedAt
	}
	return m.SourceModTime
}

// LogFile returns the record of the segment's .log file.
func (m *SegmentManifest) LogFile() (FileRecord, bool) {
	for _, f := range m.Files {
		if f.Name == segment.FormatName(m.BaseOffset, segment.KindLog) {
			return f, true
		}
	}
	return FileRecord{}, false
}

// InlineFile is a small file carried inside a log-dir manifest.
type InlineFile struct {
	Name    string    `json:"name"`
	Content []byte    `json:"content"`
	SHA256  string    `json:"sha256"`
	ModTime time.Time `json:"mtime"`
}

// LogDirManifest captures a log dir's root files (meta.properties and the
// offset checkpoints) at one moment.
type LogDirManifest struct {
	Format      string       `json:"format"`
	Version     int          `json:"version"`
	ClusterID   string       `json:"cluster_id"`
	BrokerID    int32        `json:"broker_id"`
	LogDir      string       `json:"log_dir"`
	DirectoryID string       `json:"directory_id,omitempty"`
	CapturedAt  time.Time    `json:"captured_at"`
	Agent       string       `json:"agent"`
	Files       []InlineFile `json:"files"`
}

// GapMarker records a rolled segment Kafka deleted before it could be
// archived (docs/FORMAT.md, "Gap marker"), so the loss is visible in the
// archive and not only in an agent's log.
type GapMarker struct {
	Format     string    `json:"format"` // GapMarkerFormat
	Version    int       `json:"version"`
	ClusterID  string    `json:"cluster_id"`
	BrokerID   int32     `json:"broker_id"`
	Topic      string    `json:"topic"`
	Partition  int32     `json:"partition"`
	TopicID    string    `json:"topic_id"`
	BaseOffset int64     `json:"base_offset"`
	NextBase   int64     `json:"next_segment_base"`
	Bytes      int64     `json:"bytes"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// DecodeGapMarker parses and checks a gap marker read from key.
func DecodeGapMarker(key string, data []byte) (*GapMarker, error) {
	var g GapMarker
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("gap marker %s: %w", key, err)
	}
	if g.Format != GapMarkerFormat || g.Version != ManifestVersion {
		return nil, fmt.Errorf("gap marker %s: not a %s version %d object", key, GapMarkerFormat, ManifestVersion)
	}
	return &g, nil
}

// DivergenceReport records that a replica's rolled segment differs from
// the copy another broker archived with the same base offset and size
// (docs/FORMAT.md, "Divergence report"): written once by the standby agent
// that found it, create-only, read by ls and the scrub. Restore does not
// read it (it restores the archived copy).
type DivergenceReport struct {
	Format         string    `json:"format"` // DivergenceFormat
	Version        int       `json:"version"`
	ClusterID      string    `json:"cluster_id"`
	BrokerID       int32     `json:"broker_id"` // the replica whose copy differs
	Topic          string    `json:"topic"`
	Partition      int32     `json:"partition"`
	TopicID        string    `json:"topic_id"`
	BaseOffset     int64     `json:"base_offset"`
	Bytes          int64     `json:"bytes"` // the .log's size (both copies)
	ArchivedBroker int32     `json:"archived_broker_id"`
	ManifestKey    string    `json:"manifest_key"` // the archived copy
	DataKey        string    `json:"data_key"`
	FirstDiffStart int64     `json:"first_diff_start"` // the first differing chunk's byte range [start, end)
	FirstDiffEnd   int64     `json:"first_diff_end"`
	DetectedAt     time.Time `json:"detected_at"`
}

// DecodeDivergenceReport parses and checks a divergence report read from key.
func DecodeDivergenceReport(key string, data []byte) (*DivergenceReport, error) {
	var d DivergenceReport
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("divergence report %s: %w", key, err)
	}
	if d.Format != DivergenceFormat || d.Version != ManifestVersion {
		return nil, fmt.Errorf("divergence report %s: not a %s version %d object", key, DivergenceFormat, ManifestVersion)
	}
	if d.BaseOffset < 0 || d.Bytes < 0 || d.FirstDiffStart < 0 || d.FirstDiffEnd < d.FirstDiffStart || d.FirstDiffEnd > d.Bytes {
		return nil, fmt.Errorf("divergence report %s: base offset %d, size %d, first difference [%d, %d) out of range", key, d.BaseOffset, d.Bytes, d.FirstDiffStart, d.FirstDiffEnd)
	}
	return &d, nil
}

// MaxManifestSize bounds how much of a manifest object is read.
const MaxManifestSize = 64 << 20

// DecodeSegmentManifest parses and checks a segment manifest read from key.
// Names it carries are not yet validated for use as paths: restore does that.
func DecodeSegmentManifest(key string, data []byte) (*SegmentManifest, error) {
	var m SegmentManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", key, err)
	}
	if m.Format != SegmentManifestFormat {
		return nil, fmt.Errorf("manifest %s: format %q, want %q", key, m.Format, SegmentManifestFormat)
	}
	if m.Version != ManifestVersion && m.Version != ManifestVersionV2 {
		return nil, fmt.Errorf("manifest %s: unsupported manifest version %d (this segvault reads %d and %d)", key, m.Version, ManifestVersion, ManifestVersionV2)
	}
	if m.Kind != KindSegment && m.Kind != KindKRaftSnapshot {
		return nil, fmt.Errorf("manifest %s: unknown kind %q", key, m.Kind)
	}
	if m.Summary == nil || len(m.Files) == 0 {
		return nil, fmt.Errorf("manifest %s: no summary or no files", key)
	}
	if m.Version == ManifestVersionV2 {
		if err := checkV2(key, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", key, err)
		}
	}
	for i, f := range m.Files {
		// A v2 record (read as chunks) in a v1 manifest would skip checkV2.
		if m.Version == ManifestVersion && (f.DataKey != "" || len(f.Chunks) > 0) {
			return nil, fmt.Errorf("manifest %s: file %d (%q): data_key/chunks (version 2 fields) in a version 1 manifest", key, i, f.Name)
		}
	}
	return &m, nil
}

// MaxChunkRawSize bounds a v2 chunk's raw size (a reader holds one chunk
// in memory), 16 times DefaultChunkSize.
const MaxChunkRawSize = 16 * DefaultChunkSize

// checkV2 checks what a v2 manifest adds: the upload id, and for every file
// its data key and chunks (no v1 object; chunks cover exactly [0, Size) in
// order; the chunks stored in the data object are its whole content, in
// order, from offset 0; sizes, CRCs, compression and encryption sane).
//
// Keys are where a reader GETs, so they are confined: no empty, "." or ".."
// element; a file's data_key is <manifest dir><name>.sv2 when key is a
// manifest key (the writer puts them together; a key given as a longer
// path, a local store's file, may carry more leading elements than the
// object key); a chunk's key, when set,
// is a tail-capture pack (.../brokers/<broker>/tails/<name>.pack) of the
// manifest's own cluster.
func checkV2(key string, m *SegmentManifest) error {
	if !isVersionID(m.UploadID) {
		return fmt.Errorf("version 2 manifest without a valid upload_id (%q)", m.UploadID)
	}
	dir, root := "", ""
	if d, ok := strings.CutSuffix(key, "/"+ManifestName); ok {
		dir = d + "/"
		// <root>/topics/<topic>/<part>/<topic-id>/<segments|snapshots>/<x>/<broker>-<id>
		if e := strings.Split(d, "/"); len(e) > 7 && e[len(e)-7] == "topics" {
			root = strings.Join(e[:len(e)-7], "/") + "/"
		}
	}
	for i, f := range m.Files {
		where := fmt.Sprintf("file %d (%q)", i, f.Name)
		if f.Object != (StoredObject{}) {
			return fmt.Errorf("%s: a v1 object (%q) in a version 2 manifest", where, f.Object.Key)
		}
		if f.DataKey == "" {
			return fmt.Errorf("%s: no data_key", where)
		}
		// (an illegal file name is restore's check, which names it as such)
		base := f.DataKey[strings.LastIndexByte(f.DataKey, '/')+1:]
		plain := f.Name != "" && f.Name != "." && f.Name != ".." && !strings.ContainsAny(f.Name, "/\\")
		if !saneKey(f.DataKey) || !strings.HasSuffix(base, ".sv2") || plain && base != f.Name+".sv2" ||
			dir != "" && !sameDir(f.DataKey, base, dir, 9) {
			return fmt.Errorf("%s: data_key %q is outside the segment's prefix %s (want <prefix><name>.sv2, this manifest's own data object)", where, f.DataKey, dir)
		}
		if f.Size < 0 {
			return fmt.Errorf("%s: negative size %d", where, f.Size)
		}
		var raw, stored int64
		for j, c := range f.Chunks {
			cw := fmt.Sprintf("%s chunk %d", where, j)
			if c.RawSize <= 0 || c.RawSize > MaxChunkRawSize {
				return fmt.Errorf("%s: raw size %d not in [1, %d]", cw, c.RawSize, MaxChunkRawSize)
			}
			if c.StoredSize <= 0 || c.StoredSize > 2*c.RawSize+1<<20 {
				return fmt.Errorf("%s: stored size %d for raw size %d", cw, c.StoredSize, c.RawSize)
			}
			if c.Offset < 0 || c.Key == "" && c.Offset != stored {
				return fmt.Errorf("%s: offset %d, want %d (the data object is its chunks, in order)", cw, c.Offset, stored)
			}
			if c.Key != "" && !tailPackKey(c.Key, root) {
				return fmt.Errorf("%s: in object %q, neither its data object nor a tail pack of this cluster (%sbrokers/<broker>/tails/<name>.pack)", cw, c.Key, root)
			}
			if !isCRC(c.CRC32C) || !isCRC(c.RawCRC32C) {
				return fmt.Errorf("%s: crc32c %q / raw_crc32c %q: want 8 hex digits", cw, c.CRC32C, c.RawCRC32C)
			}
			if c.Compression != CompressionNone && c.Compression != CompressionZstd {
				return fmt.Errorf("%s: unknown compression %q", cw, c.Compression)
			}
			switch {
			case c.Encryption != EncryptionNone && c.Encryption != EncryptionAESGCMStream:
				return fmt.Errorf("%s: unknown encryption %q", cw, c.Encryption)
			case c.Encryption != EncryptionNone && c.KeyID == "":
				return fmt.Errorf("%s: encrypted without a key_id", cw)
			}
			if c.Key == "" {
				stored += c.StoredSize
			}
			raw += c.RawSize
		}
		if raw != f.Size {
			return fmt.Errorf("%s: chunks cover %d raw bytes, the file has %d", where, raw, f.Size)
		}
	}
	return nil
}

// saneKey reports whether k is an object key with no empty, "." or ".."
// element.
func saneKey(k string) bool {
	for _, e := range strings.Split(k, "/") {
		if e == "" || e == "." || e == ".." {
			return false
		}
	}
	return true
}

// tailPackKey reports whether k is <root>brokers/<broker>/tails/<name>.pack
// (any root when root is "").
func tailPackKey(k, root string) bool {
	if !saneKey(k) || !strings.HasSuffix(k, ".pack") {
		return false
	}
	e := strings.Split(k, "/")
	if len(e) < 4 || e[len(e)-2] != "tails" || e[len(e)-4] != "brokers" {
		return false
	}
	return root == "" || sameDir(k, strings.Join(e[len(e)-4:], "/"), root, 2)
}

// sameDir reports whether k is <d>name where d is dir or, for a caller
// that names the manifest by a longer path (a local store's file), d has at
// least min elements and dir ends with "/"+d.
func sameDir(k, name, dir string, min int) bool {
	d, ok := strings.CutSuffix(k, name)
	if !ok || !strings.HasSuffix(d, "/") {
		return false
	}
	return d == dir || strings.Count(d, "/") >= min && strings.HasSuffix(dir, "/"+d)
}

func isCRC(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// EncodeManifest returns the bytes of a segment manifest as writers store
// it: deterministic (the same manifest, whatever the time zones of its
// times, is the same bytes), so a retried commit of a v2 manifest is
// byte-identical to the first.
func EncodeManifest(m *SegmentManifest) ([]byte, error) {
	c := *m
	c.CreatedAt, c.SourceModTime = utc(c.CreatedAt), utc(c.SourceModTime)
	c.Files = append([]FileRecord(nil), m.Files...)
	for i := range c.Files {
		c.Files[i].ModTime = utc(c.Files[i].ModTime)
	}
	if m.PartitionState != nil {
		ps := *m.PartitionState
		ps.CapturedAt = utc(ps.CapturedAt)
		c.PartitionState = &ps
	}
	data, err := json.MarshalIndent(&c, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest of %s-%d segment %d: %w", m.Topic, m.Partition, m.BaseOffset, err)
	}
	return data, nil
}

// utc is t in UTC, the zero time unchanged (omitzero).
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// DecodeLogDirManifest parses and checks a log-dir manifest read from key.
func DecodeLogDirManifest(key string, data []byte) (*LogDirManifest, error) {
	var m LogDirManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("log-dir manifest %s: %w", key, err)
	}
	if m.Format != LogDirManifestFormat {
		return nil, fmt.Errorf("log-dir manifest %s: format %q, want %q", key, m.Format, LogDirManifestFormat)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("log-dir manifest %s: unsupported version %d (this segvault reads %d)", key, m.Version, ManifestVersion)
	}
	return &m, nil
}
