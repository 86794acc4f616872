package index

import (
	"io"

	"github.com/segvault/segvault/segment"
)

// KRaftSnapshotReport describes a KRaft snapshot (<offset>-<epoch>.checkpoint
// in __cluster_metadata-0) or a bootstrap.checkpoint: record-batch files
// framed by a SnapshotHeader control record first and a SnapshotFooter
// control record last (raft/.../snapshot/RecordsSnapshotWriter.java).
type KRaftSnapshotReport struct {
	Name        string `json:"name"`
	Bytes       int64  `json:"bytes"`
	Batches     int    `json:"batches"`
	Records     int64  `json:"records"` // from batch headers
	LastOffset  int64  `json:"last_offset"`
	HasHeader   bool   `json:"has_header"`
	HasFooter   bool   `json:"has_footer"`
	MaxEpoch    int32  `json:"max_epoch"`    // largest partition leader epoch in the batches
	DataBatches int    `json:"data_batches"` // non-control batches
}

// VerifyKRaftSnapshot walks a KRaft snapshot or bootstrap.checkpoint with
// segment.Reader (CRCs, framing, offsets from 0) and checks that the first
// record is a SnapshotHeader (control type 3) and the last a SnapshotFooter
// (control type 4). A missing header or footer is an *IndexError with
// Check CheckHeader or CheckFooter at the offending batch's position; a
// batch-level problem is the reader's *segment.CorruptionError.
func VerifyKRaftSnapshot(src io.Reader, size int64, name string) (*KRaftSnapshotReport, error) {
	rep := &KRaftSnapshotReport{Name: name, Bytes: size, LastOffset: -1, MaxEpoch: -1}
	r := segment.NewReader(src, size, name, segment.ReaderOptions{BaseOffset: 0})
	var lastPos int64
	lastIsFooter := false
	for r.Next() {
		b, raw := r.Batch(), r.Raw()
		if rep.Batches == 0 {
			c, ok, err := ParseControlRecord(b, raw)
			if err != nil || !ok || c.Type != segment.ControlSnapshotHeader {
				return rep, indexErr(name, b.Pos, 0, CheckHeader, "the first record is not a SnapshotHeader control record")
			}
			rep.HasHeader = true
		}
		rep.Batches++
		rep.Records += int64(b.RecordCount)
		rep.LastOffset = b.LastOffset()
		rep.MaxEpoch = max(rep.MaxEpoch, b.PartitionLeaderEpoch)
		if !b.Control() {
			rep.DataBatches++
		}
		lastPos = b.Pos
		lastIsFooter = false
		if b.Control() {
			if t, ok := lastControlType(b, raw); ok && t == segment.ControlSnapshotFooter {
				lastIsFooter = true
			}
		}
	}
	if err := r.Err(); err != nil {
		return rep, err
	}
	if rep.Batches == 0 {
		return rep, indexErr(name, 0, -1, CheckHeader, "empty snapshot: no SnapshotHeader")
	}
	if !lastIsFooter {
		return rep, indexErr(name, lastPos, rep.Batches-1, CheckFooter, "the last record is not a SnapshotFooter control record")
	}
	rep.HasFooter = true
	return rep, nil
}

// lastControlType returns the type of the last record of a control batch,
// ok=false when it has none or does not decode.
func lastControlType(b *segment.Batch, raw []byte) (segment.ControlType, bool) {
	var typ segment.ControlType
	ok := false
	err := segment.DecodeRecords(b, raw, func(r *segment.Record) bool {
		t, err := segment.ParseControlKey(r.Key)
		typ, ok = t, err == nil
		return ok
	})
	return typ, ok && err == nil
}
