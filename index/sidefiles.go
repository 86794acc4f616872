package index

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/segvault/segvault/segment"
)

// File names Kafka uses for side files.
const (
	LeaderEpochCheckpointFile = "leader-epoch-checkpoint"
	PartitionMetadataFile     = "partition.metadata"
	MetaPropertiesFile        = "meta.properties"
	RecoveryPointFile         = "recovery-point-offset-checkpoint"
	LogStartOffsetFile        = "log-start-offset-checkpoint"
	ReplicationOffsetFile     = "replication-offset-checkpoint"
	CleanerOffsetFile         = "cleaner-offset-checkpoint"
	CleanShutdownFile         = ".kafka_cleanshutdown"
)

// RootCheckpointFiles are the offset checkpoints at a log dir's root.
var RootCheckpointFiles = []string{RecoveryPointFile, LogStartOffsetFile, ReplicationOffsetFile, CleanerOffsetFile}

// SideFileError is a format error in a side file.
type SideFileError struct {
	File  string
	Pos   int64 // byte offset (binary files) or line number (text files, see Line)
	Line  int   // 1-based line for text files, 0 otherwise
	Check string
	Err   error
}

func (e *SideFileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %s check failed: %v", e.File, e.Line, e.Check, e.Err)
	}
	return fmt.Sprintf("%s: byte %d: %s check failed: %v", e.File, e.Pos, e.Check, e.Err)
}

func (e *SideFileError) Unwrap() error { return e.Err }

// ---- checkpoint files (server-common/.../CheckpointFile.java) ----

// EpochEntry is one leader-epoch-checkpoint line: "epoch startOffset".
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// CheckpointEntry is one offset checkpoint line: "topic partition offset".
type CheckpointEntry struct {
	Topic     string
	Partition int32
	Offset    int64
}

func formatCheckpoint(lines []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(lines))
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FormatLeaderEpochCheckpoint writes a leader-epoch-checkpoint file.
func FormatLeaderEpochCheckpoint(entries []EpochEntry) []byte {
	lines := make([]string, len(entries))
	for i, e := range entries {
		lines[i] = fmt.Sprintf("%d %d", e.Epoch, e.StartOffset)
	}
	return formatCheckpoint(lines)
}

// FormatOffsetCheckpoint writes an offset checkpoint file.
func FormatOffsetCheckpoint(entries []CheckpointEntry) []byte {
	lines := make([]string, len(entries))
	for i, e := range entries {
		lines[i] = fmt.Sprintf("%s %d %d", e.Topic, e.Partition, e.Offset)
	}
	return formatCheckpoint(lines)
}

// parseCheckpoint reads Kafka's checkpoint format: version 0, a count, then
// count lines. An empty file reads as no entries.
func parseCheckpoint(name string, data []byte, fields int, each func(f []string) error) error {
	if len(data) == 0 {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	bad := func(check string, err error) error {
		return &SideFileError{File: name, Line: line, Check: check, Err: err}
	}
	v, ok := next()
	if !ok {
		return bad("version", fmt.Errorf("missing version line"))
	}
	if ver, err := strconv.Atoi(v); err != nil || ver != 0 {
		return bad("version", fmt.Errorf("unrecognised version %q, expected 0", v))
	}
	c, ok := next()
	if !ok {
		return bad("count", fmt.Errorf("missing count line"))
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < 0 {
		return bad("count", fmt.Errorf("malformed count %q", c))
	}
	// Like CheckpointReadBuffer, read every remaining line, then compare
	// with the count: extra lines are as wrong as missing ones.
	i := 0
	for {
		l, ok := next()
		if !ok {
			break
		}
		f := splitJavaWhitespace(l)
		if len(f) != fields {
			return bad("line", fmt.Errorf("malformed line %q", l))
		}
		if err := each(f); err != nil {
			return bad("line", fmt.Errorf("malformed line %q: %v", l, err))
		}
		i++
	}
	if err := sc.Err(); err != nil {
		return bad("line", err)
	}
	if i != n {
		return bad("count", fmt.Errorf("expected %d entries, found %d", n, i))
	}
	return nil
}

// splitJavaWhitespace is Java's line.split("\\s+"): a leading separator
// gives an empty first field, trailing ones are dropped.
func splitJavaWhitespace(l string) []string {
	f := strings.Fields(l)
	if l != "" && len(f) > 0 && strings.IndexFunc(l[:1], unicode.IsSpace) == 0 {
		f = append([]string{""}, f...)
	}
	return f
}

// ParseLeaderEpochCheckpoint reads a leader-epoch-checkpoint file.
func ParseLeaderEpochCheckpoint(name string, data []byte) ([]EpochEntry, error) {
	var out []EpochEntry
	err := parseCheckpoint(name, data, 2, func(f []string) error {
		e, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || e < 0 || o < 0 {
			return fmt.Errorf("bad epoch or offset")
		}
		out = append(out, EpochEntry{Epoch: int32(e), StartOffset: o})
		return nil
	})
	return out, err
}

// ParseOffsetCheckpoint reads an offset checkpoint file.
func ParseOffsetCheckpoint(name string, data []byte) ([]CheckpointEntry, error) {
	var out []CheckpointEntry
	err := parseCheckpoint(name, data, 3, func(f []string) error {
		p, err1 := strconv.ParseInt(f[1], 10, 32)
		o, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || p < 0 {
			return fmt.Errorf("bad partition or offset")
		}
		out = append(out, CheckpointEntry{Topic: f[0], Partition: int32(p), Offset: o})
		return nil
	})
	return out, err
}

// ---- partition.metadata (PartitionMetadataFile.java) ----

// FormatPartitionMetadata writes partition.metadata: no trailing newline.
func FormatPartitionMetadata(topicID string) []byte {
	return []byte("version: 0\ntopic_id: " + topicID)
}

// ParsePartitionMetadata reads partition.metadata and returns the topic id.
// Kafka writes it without a trailing newline; like its reader
// (PartitionMetadataReadBuffer) this accepts one, and any whitespace between
// key and value.
func ParsePartitionMetadata(name string, data []byte) (string, error) {
	bad := func(line int, check string, err error) (string, error) {
		return "", &SideFileError{File: name, Line: line, Check: check, Err: err}
	}
	text := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	lines := strings.Split(text, "\n")
	if len(lines) != 2 {
		return bad(1, "format", fmt.Errorf("want 2 lines, found %d", len(lines)))
	}
	v := splitJavaWhitespace(strings.TrimSuffix(lines[0], "\r"))
	if len(v) != 2 || v[0] != "version:" {
		return bad(1, "version", fmt.Errorf("malformed line %q", lines[0]))
	}
	if n, err := strconv.Atoi(v[1]); err != nil || n < 0 {
		return bad(1, "version", fmt.Errorf("unrecognized version %q", v[1]))
	}
	id := splitJavaWhitespace(lines[1])
	if len(id) != 2 || id[0] != "topic_id:" {
		return bad(2, "topic id", fmt.Errorf("malformed line %q", lines[1]))
	}
	if err := ValidateTopicID(id[1]); err != nil {
		return bad(2, "topic id", err)
	}
	return id[1], nil
}

// ValidateTopicID checks a Kafka Uuid string: 22 characters of URL-safe
// base64 for 16 bytes, not the zero uuid (which the broker refuses; the
// metadata topic's AAAAAAAAAAAAAAAAAAAAAQ is valid).
func ValidateTopicID(id string) error {
	if len(id) != 22 {
		return fmt.Errorf("topic id %q is not 22 characters", id)
	}
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("topic id %q is not URL-safe base64 of 16 bytes", id)
	}
	if bytes.Equal(b, make([]byte, 16)) {
		return fmt.Errorf("invalid topic id %q (zero uuid)", id)
	}
	return nil
}

// ---- meta.properties (MetaProperties.java) ----

// MetaProperties is a parsed meta.properties. Unknown keys are kept.
type MetaProperties struct {
	Version     int
	NodeID      int32 // node.id (v1) or broker.id (v0); -1 if absent
	ClusterID   string
	DirectoryID string
	Other       map[string]string
}

// ParseProperties reads a Java properties file (the subset Kafka writes:
// key=value lines, # comments).
func ParseProperties(data []byte) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			k, v, _ = strings.Cut(l, ":")
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// ParseMetaProperties reads meta.properties.
func ParseMetaProperties(name string, data []byte) (*MetaProperties, error) {
	p := ParseProperties(data)
	m := &MetaProperties{NodeID: -1, Other: map[string]string{}}
	v, ok := p["version"]
	if !ok {
		return nil, &SideFileError{File: name, Line: 1, Check: "version", Err: fmt.Errorf("no version key")}
	}
	n, err := strconv.Atoi(v)
	if err != nil || (n != 0 && n != 1) {
		return nil, &SideFileError{File: name, Line: 1, Check: "version", Err: fmt.Errorf("unsupported version %q", v)}
	}
	m.Version = n
	idKey := "broker.id"
	if n == 1 {
		idKey = "node.id"
	}
	for k, val := range p {
		switch k {
		case "version":
		case idKey:
			id, err := strconv.ParseInt(val, 10, 32)
			if err != nil {
				return nil, &SideFileError{File: name, Line: 1, Check: idKey, Err: fmt.Errorf("bad %s %q", idKey, val)}
			}
			m.NodeID = int32(id)
		case "cluster.id":
			m.ClusterID = val
		case "directory.id":
			m.DirectoryID = val
		default:
			m.Other[k] = val
		}
	}
	if n == 1 && (m.NodeID < 0 || m.ClusterID == "") {
		return nil, &SideFileError{File: name, Line: 1, Check: "fields", Err: fmt.Errorf("version 1 needs node.id and cluster.id")}
	}
	return m, nil
}

// FormatMetaProperties writes meta.properties as Kafka does: a comment line,
// a date comment, then sorted key=value lines.
func FormatMetaProperties(m *MetaProperties, date string) []byte {
	kv := map[string]string{"version": strconv.Itoa(m.Version)}
	for k, v := range m.Other {
		kv[k] = v
	}
	if m.Version == 1 {
		kv["node.id"] = strconv.Itoa(int(m.NodeID))
	} else if m.NodeID >= 0 {
		kv["broker.id"] = strconv.Itoa(int(m.NodeID))
	}
	if m.ClusterID != "" {
		kv["cluster.id"] = m.ClusterID
	}
	if m.DirectoryID != "" {
		kv["directory.id"] = m.DirectoryID
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("#\n#" + date + "\n")
	for _, k := range keys {
		b.WriteString(k + "=" + kv[k] + "\n")
	}
	return b.Bytes()
}

// ---- producer state snapshot (ProducerStateManager.java) ----

// ProducerEntry is one producer in a .snapshot file (46 bytes on disk).
type ProducerEntry struct {
	ProducerID            int64
	Epoch                 int16
	LastSequence          int32
	LastOffset            int64
	OffsetDelta           int32
	Timestamp             int64
	CoordinatorEpoch      int32
	CurrentTxnFirstOffset int64
}

const (
	snapshotVersion     = 1
	snapshotHeaderSize  = 10 // version:int16 crc:uint32 count:int32
	snapshotEntrySize   = 46
	snapshotCRCStart    = 6
	maxSnapshotProducer = 1 << 26
)

// EncodeProducerSnapshot writes a producer snapshot file.
func EncodeProducerSnapshot(entries []ProducerEntry) []byte {
	b := make([]byte, snapshotHeaderSize+snapshotEntrySize*len(entries))
	be := binary.BigEndian
	be.PutUint16(b, snapshotVersion)
	be.PutUint32(b[6:], uint32(len(entries)))
	p := b[snapshotHeaderSize:]
	for _, e := range entries {
		be.PutUint64(p, uint64(e.ProducerID))
		be.PutUint16(p[8:], uint16(e.Epoch))
		be.PutUint32(p[10:], uint32(e.LastSequence))
		be.PutUint64(p[14:], uint64(e.LastOffset))
		be.PutUint32(p[22:], uint32(e.OffsetDelta))
		be.PutUint64(p[26:], uint64(e.Timestamp))
		be.PutUint32(p[34:], uint32(e.CoordinatorEpoch))
		be.PutUint64(p[38:], uint64(e.CurrentTxnFirstOffset))
		p = p[snapshotEntrySize:]
	}
	be.PutUint32(b[2:], segment.CRC32C(b[snapshotCRCStart:]))
	return b
}

// DecodeProducerSnapshot reads and checks a producer snapshot file.
func DecodeProducerSnapshot(name string, b []byte) ([]ProducerEntry, error) {
	bad := func(pos int64, check string, err error) ([]ProducerEntry, error) {
		return nil, &SideFileError{File: name, Pos: pos, Check: check, Err: err}
	}
	if len(b) < snapshotHeaderSize {
		return bad(0, "length", fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), snapshotHeaderSize))
	}
	be := binary.BigEndian
	if v := int16(be.Uint16(b)); v != snapshotVersion {
		return bad(0, "version", fmt.Errorf("snapshot contained an unknown file version %d", v))
	}
	stored := be.Uint32(b[2:])
	if c := segment.CRC32C(b[snapshotCRCStart:]); c != stored {
		return bad(2, "crc", fmt.Errorf("crc mismatch: stored %08x, computed %08x", stored, c))
	}
	n := int32(be.Uint32(b[6:]))
	if n < 0 || n > maxSnapshotProducer || int64(len(b)) != snapshotHeaderSize+int64(n)*snapshotEntrySize {
		return bad(6, "count", fmt.Errorf("%d entries do not fit %d bytes", n, len(b)))
	}
	out := make([]ProducerEntry, n)
	p := b[snapshotHeaderSize:]
	for i := range out {
		out[i] = ProducerEntry{
			ProducerID: int64(be.Uint64(p)), Epoch: int16(be.Uint16(p[8:])), LastSequence: int32(be.Uint32(p[10:])),
			LastOffset: int64(be.Uint64(p[14:])), OffsetDelta: int32(be.Uint32(p[22:])), Timestamp: int64(be.Uint64(p[26:])),
			CoordinatorEpoch: int32(be.Uint32(p[34:])), CurrentTxnFirstOffset: int64(be.Uint64(p[38:])),
		}
		p = p[snapshotEntrySize:]
	}
	return out, nil
}
