package agent

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/segvault/segvault/internal/fsutil"
)

// Tail-capture state (docs/FORMAT.md, "Tail captures"): per partition the
// captured prefix [0, To) of its active segment and the running SHA-256 of
// it, so that a restart continues the chain without reading the file again;
// the broker's next capture sequence number; and the capture in flight
// (Pending) whose commit a crash may have left undecided.
//
// On disk: StateDir/tail-state.json, written tmp+fsync+rename after every
// change (once per capture round). A missing or unreadable file starts
// every chain again from byte 0 and takes the next sequence number from the
// bucket.
type tailState struct {
	Version int                   `json:"version"`
	NextSeq int64                 `json:"next_seq"`
	Tracks  map[string]*tailTrack `json:"tracks"`
	// Pending is the capture being committed: its manifest may or may not be
	// in the bucket. Tracks there are the tracks as they are once it commits.
	Pending *tailPending `json:"pending,omitempty"`
}

const tailStateVersion = 1

// tailStateFile is the state file's name in StateDir.
const tailStateFile = "tail-state.json"

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

// loadTailState reads the state; fresh is true when there was none usable.
func loadTailState(stateDir string) (st *tailState, fresh bool, err error) {
	st = &tailState{Version: tailStateVersion, Tracks: map[string]*tailTrack{}}
	data, err := os.ReadFile(filepath.Join(stateDir, tailStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, true, nil
	}
	if err != nil {
		return st, true, fmt.Errorf("read %s: %w", filepath.Join(stateDir, tailStateFile), err)
	}
	var s tailState
	if json.Unmarshal(data, &s) != nil || s.Version != tailStateVersion || s.NextSeq < 1 {
		return st, true, fmt.Errorf("%s: unreadable or of another version; tail chains start again from byte 0", filepath.Join(stateDir, tailStateFile))
	}
	if s.Tracks == nil {
		s.Tracks = map[string]*tailTrack{}
	}
	for _, t := range s.Tracks {
		if _, err := t.hasher(); err != nil {
			t.reset(t.Base, t.Ino)
		}
	}
	return &s, false, nil
}

// save writes the state durably.
func (st *tailState) save(stateDir string) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := filepath.Join(stateDir, tailStateFile)
	if err := fsutil.WriteFileAtomic(p, data, 0o640); err != nil {
		return fmt.Errorf("write tail state %s: %w", p, err)
	}
	return nil
}
