package index

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/segvault/segvault/segment"
)

// MetadataDirName is the KRaft metadata log's partition directory.
const MetadataDirName = "__cluster_metadata-0"

// MetadataLoad says what LoadClusterMetadata read.
type MetadataLoad struct {
	Snapshot       string // snapshot file name, "" if none
	SnapshotOffset int64  // the snapshot's end offset (records below it are in it); 0 without one
	Segments       []string
	EndOffset      int64 // next offset after the last applied record
	// Torn is set when the last segment ends in a partial batch (it is being
	// written): the complete batches before it were applied.
	Torn bool
}

// LoadClusterMetadata builds the metadata image from a KRaft metadata log
// directory (…/__cluster_metadata-0): the newest complete snapshot
// <offset>-<epoch>.checkpoint (".part" and ".deleted" ones are ignored),
// then every record at or above the snapshot's offset in the log segments.
// It reads files only and speaks no Kafka protocol. Records of transactions
// (KIP-868, used by ZooKeeper migration) are applied as they come, committed
// or not.
func LoadClusterMetadata(dir string) (*ClusterMetadata, MetadataLoad, error) {
	var load MetadataLoad
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, load, fmt.Errorf("read metadata log dir %s: %w", dir, err)
	}
	var snap *segment.FileName
	var logs []segment.FileName
	for _, e := range entries {
		n, ok := segment.ParseFileName(e.Name())
		if !ok || n.Suffix != "" || !e.Type().IsRegular() {
			continue
		}
		switch n.Kind {
		case segment.KindCheckpoint:
			if snap == nil || n.BaseOffset > snap.BaseOffset || (n.BaseOffset == snap.BaseOffset && n.Epoch > snap.Epoch) {
				snap = &n
			}
		case segment.KindLog:
			logs = append(logs, n)
		}
	}
	m := NewClusterMetadata()
	if snap != nil {
		load.Snapshot = snap.String()
		load.SnapshotOffset = snap.BaseOffset
		load.EndOffset = snap.BaseOffset
		if err := applyMetadataFile(m, filepath.Join(dir, load.Snapshot), 0, 0, true); err != nil {
			return nil, load, err
		}
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].BaseOffset < logs[j].BaseOffset })
	for i, n := range logs {
		if i+1 < len(logs) && logs[i+1].BaseOffset <= load.SnapshotOffset {
			continue // wholly inside the snapshot
		}
		name := n.String()
		load.Segments = append(load.Segments, name)
		path := filepath.Join(dir, name)
		err := applyMetadataFile(m, path, n.BaseOffset, load.SnapshotOffset, false)
		if segment.IsTruncated(err) && i == len(logs)-1 {
			load.Torn = true
			err = nil
		}
		if err != nil {
			return nil, load, err
		}
	}
	if last := m.lastOffset; last+1 > load.EndOffset {
		load.EndOffset = last + 1
	}
	return m, load, nil
}

// ApplyMetadataFile applies the metadata records of one snapshot
// (snapshot=true: offsets from 0) or log segment (base = its base offset)
// whose offsets are at or above from.
func applyMetadataFile(m *ClusterMetadata, path string, base, from int64, snapshot bool) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open metadata file: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat metadata file: %w", err)
	}
	return ApplyMetadataRecords(m, f, fi.Size(), path, base, from, snapshot)
}

// ApplyMetadataRecords applies the metadata records of a snapshot or log
// segment read from src (size bytes, named name in errors). Control batches
// (snapshot header/footer, leader change, voters) are skipped. A malformed
// record is an error naming the file, the batch position and the record
// offset.
func ApplyMetadataRecords(m *ClusterMetadata, src io.Reader, size int64, name string, base, from int64, snapshot bool) error {
	r := segment.NewReader(src, size, name, segment.ReaderOptions{BaseOffset: base})
	for r.Next() {
		b := r.Batch()
		if b.Control() || b.LastOffset() < from {
			continue
		}
		recs, err := r.Records()
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Offset < from {
				continue
			}
			if err := m.Apply(rec.Value); err != nil {
				return fmt.Errorf("%s: batch at byte %d, record at offset %d: %w", name, b.Pos, rec.Offset, err)
			}
			if !snapshot {
				m.lastOffset = rec.Offset
			}
		}
	}
	return r.Err()
}
