package archive

import (
	"encoding/json"
	"fmt"
	"time"
)

// TailManifestFormat names a tail-capture manifest.
const TailManifestFormat = "segvault.tail"

// TailManifest commits one tail-capture pack (docs/FORMAT.md, "Tail
// captures"): for every partition of one broker whose active segment grew
// since the broker's previous capture, the complete, validated batches
// appended, stored as chunks of one pack object (TailPackKey). It is written
// after the pack; its presence is the commit. Seq increases per broker.
type TailManifest struct {
	Format     string        `json:"format"`  // TailManifestFormat
	Version    int           `json:"version"` // ManifestVersionV2
	ClusterID  string        `json:"cluster_id"`
	BrokerID   int32         `json:"broker_id"`
	Seq        int64         `json:"seq"`
	UploadID   string        `json:"upload_id"`
	PackKey    string        `json:"pack_key"`
	PackSize   int64         `json:"pack_size"`
	CapturedAt time.Time     `json:"captured_at"` // when the agent read the files
	Agent      string        `json:"agent"`
	Captures   []TailCapture `json:"captures"`
}

// TailCapture is the bytes [From, To) of one partition's active segment
// (the .log whose base offset is SegmentBase), ending at a batch boundary.
// Captures of one segment chain: a capture continues the one whose SHA256
// equals its PrevSHA256 (SHA-256 of the segment's bytes [0, From); of no
// bytes when From is 0). Restore follows the chain that ends in the newest
// capture, so a capture whose earlier bytes the broker has since truncated
// and rewritten (which starts a new chain) is never mixed with the new ones.
type TailCapture struct {
	LogDir      string `json:"log_dir"`
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	TopicID     string `json:"topic_id"`
	SegmentBase int64  `json:"segment_base"`
	From        int64  `json:"from"`
	To          int64  `json:"to"`
	PrevSHA256  string `json:"prev_sha256"`
	SHA256      string `json:"sha256"` // of the segment's bytes [0, To)
	// Offsets and time of the batches in [From, To).
	FirstOffset  int64 `json:"first_offset"`
	LastOffset   int64 `json:"last_offset"`
	MaxTimestamp int64 `json:"max_timestamp"`
	// LastEpoch is the partition leader epoch of the last batch.
	LastEpoch int32 `json:"last_epoch"`
	// Chunks hold [From, To) in order; Key "" means the pack.
	Chunks         []Chunk         `json:"chunks"`
	PartitionState *PartitionState `json:"partition_state,omitempty"`
}

// MaxTailManifestSize bounds how much of a tail manifest is read.
const MaxTailManifestSize = MaxManifestSize

// DecodeTailManifest parses and checks a tail manifest read from key: the
// format and version, and that every capture's chunks cover exactly
// [From, To). Names are not validated for use as paths: restore does that.
func DecodeTailManifest(key string, data []byte) (*TailManifest, error) {
	var m TailManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("tail manifest %s: %w", key, err)
	}
	if m.Format != TailManifestFormat || m.Version != ManifestVersionV2 {
		return nil, fmt.Errorf("tail manifest %s: not a %s version %d object (format %q, version %d)", key, TailManifestFormat, ManifestVersionV2, m.Format, m.Version)
	}
	for i, c := range m.Captures {
		if c.From < 0 || c.To < c.From {
			return nil, fmt.Errorf("tail manifest %s: capture %d (%s-%d): bad range [%d, %d)", key, i, c.Topic, c.Partition, c.From, c.To)
		}
		n := c.From
		for j, ch := range c.Chunks {
			if ch.RawSize < 0 || ch.StoredSize < 0 || ch.Offset < 0 {
				return nil, fmt.Errorf("tail manifest %s: capture %d chunk %d: negative size or offset", key, i, j)
			}
			n += ch.RawSize
		}
		if n != c.To {
			return nil, fmt.Errorf("tail manifest %s: capture %d (%s-%d): chunks cover [%d, %d), the capture says [%d, %d)", key, i, c.Topic, c.Partition, c.From, n, c.From, c.To)
		}
	}
	return &m, nil
}
