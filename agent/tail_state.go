package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
)

// Tail-capture state (docs/FORMAT.md, "Tail captures"): per partition the
// captured prefix [0, To) of its active segment and the running SHA-256 of
// it, so that a restart continues the chain without reading the file again;
// the broker's next capture sequence number; and the capture in flight
// (Pending) whose commit a crash may have left undecided.
//
// On disk (StateDir), as the archived-segment state (state.go) but in its
// own files:
//
//	tail-state.json     snapshot: the whole state and its generation "gen",
//	                    written tmp+fsync+rename at compaction
//	tail-state.journal  one record per save since the snapshot, each the
//	                    change of that save only (the tracks that changed,
//	                    the pending capture, next_seq):
//	                    "<crc32c hex> <json tailRecord>\n", appended
//
// A round's cost is proportional to what changed: one record, fsynced once
// (before the capture's manifest is written: see tailer.commit). The
// journal is folded into a new snapshot (new gen) when it grows past 4x the
// snapshot (or tailJournalMaxRecords); records of another gen (a crash
// between the snapshot and the journal's truncation) are skipped. A torn
// last record (a crash mid-append) is ignored, with a warning; a bad record
// followed by good ones makes the state unusable. A missing or unusable
// state starts every chain again from byte 0 and takes the next sequence
// number from the bucket (never a wrong chain). A version-1
// tail-state.json (the whole state, rewritten every round) is read once
// and migrated at the first save.
type tailState struct {
	Version int                   `json:"version"`
	Gen     string                `json:"gen,omitempty"`
	NextSeq int64                 `json:"next_seq"`
	Tracks  map[string]*tailTrack `json:"tracks"`
	// Pending is the capture being committed: its manifest may or may not be
	// in the bucket. Tracks there are the tracks as they are once it commits.
	Pending *tailPending `json:"pending,omitempty"`

	jr *tailJournal // the files' bookkeeping
}

const tailStateVersion = 2

// tailStateFile is the snapshot's name in StateDir (also the name of the
// version-1 state file), tailJournalFile the journal's.
const (
	tailStateFile   = "tail-state.json"
	tailJournalFile = "tail-state.journal"
)

type tailPending struct {
	Seq         int64                 `json:"seq"`
	UploadID    string                `json:"upload_id"`
	ManifestKey string                `json:"manifest_key"`
	PackKey     string                `json:"pack_key"`
	ClusterID   string                `json:"cluster_id"`
	BrokerID    int32                 `json:"broker_id"`
	Tracks      map[string]*tailTrack `json:"tracks"`
}

// tailTrack is one partition's active segment as far as it was captured.
type tailTrack struct {
	LogDir    string `json:"log_dir"`
	Path      string `json:"path"` // partition dir
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Base      int64  `json:"base"` // the segment's base offset
	Ino       uint64 `json:"ino"`
	To        int64  `json:"to"` // captured end, a batch boundary
	// Digest is the marshaled SHA-256 state of [0, To); Sum its hex sum.
	Digest []byte `json:"digest"`
	Sum    string `json:"sum"`
	// The first bytes (up to tailHdrLen) of the first and last captured
	// batches, and the last batch's position, offset and leader epoch:
	// a rewrite of the captured prefix shows in them.
	FirstHdr   string `json:"first_hdr,omitempty"`
	LastHdr    string `json:"last_hdr,omitempty"`
	LastPos    int64  `json:"last_pos"`
	LastOffset int64  `json:"last_offset"`
	LastEpoch  int32  `json:"last_epoch"`
	// StateSum is the SHA-256 of the partition-dir files last sent with a
	// capture of this chain (PartitionState), so they are sent on change.
	StateSum string `json:"state_sum,omitempty"`
}

// tailHdrLen covers a v2 batch's baseOffset, length, partitionLeaderEpoch,
// magic and CRC (which covers the rest of the batch), and a legacy
// message's offset, size, CRC, magic and attributes.
const tailHdrLen = 21

func (t *tailTrack) clone() *tailTrack {
	c := *t
	c.Digest = append([]byte(nil), t.Digest...)
	return &c
}

// same reports whether o records what t does.
func (t *tailTrack) same(o *tailTrack) bool {
	type cmp struct {
		LogDir, Path, Topic, Sum, FirstHdr, LastHdr, StateSum string
		Partition, LastEpoch                                  int32
		Base, To, LastPos, LastOffset                         int64
		Ino                                                   uint64
	}
	c := func(x *tailTrack) cmp {
		return cmp{x.LogDir, x.Path, x.Topic, x.Sum, x.FirstHdr, x.LastHdr, x.StateSum, x.Partition, x.LastEpoch, x.Base, x.To, x.LastPos, x.LastOffset, x.Ino}
	}
	return c(t) == c(o) && bytes.Equal(t.Digest, o.Digest)
}

// hasher returns the SHA-256 state of [0, To).
func (t *tailTrack) hasher() (hash.Hash, error) {
	h := sha256.New()
	if t.To == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(t.Digest); err != nil {
		return nil, fmt.Errorf("tail state of %s: bad digest state: %w", t.Path, err)
	}
	return h, nil
}

// setHash records h as the state of [0, To).
func (t *tailTrack) setHash(h hash.Hash) error {
	d, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	t.Digest, t.Sum = d, hex.EncodeToString(h.Sum(nil))
	return nil
}

// reset starts a new chain at byte 0 of segment base with inode ino.
func (t *tailTrack) reset(base int64, ino uint64) {
	*t = tailTrack{LogDir: t.LogDir, Path: t.Path, Topic: t.Topic, Partition: t.Partition, Base: base, Ino: ino,
		Sum: emptySHA256, LastOffset: -1, LastEpoch: -1}
}

var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()
