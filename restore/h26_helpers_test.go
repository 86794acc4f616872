package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

const h26Fixtures = "../../shared/fixtures/kafka-real"

// h26Cap describes one capture to pack: bytes [From, To) of data (the
// whole active segment as the broker held it when captured).
type h26Cap struct {
	Topic     string
	Partition int32
	TopicID   string
	Base      int64
	Data      []byte
	From, To  int64
	Epochs    []byte // leader-epoch-checkpoint to carry (nil: no partition state)
	Hostile   bool   // the bytes need not be valid batches (offsets then from Offsets)
	Offsets   [2]int64
}

// h26Pack writes one tail pack and its manifest (the test producer of
// TailManifests: real segment bytes, ChunkCodec.EncodeChunk, chunks of
// chunkSize raw bytes) and returns the manifest key.
func h26Pack(t *testing.T, b uploader.Bucket, layout archive.Layout, cluster string, broker int32, seq int64, at time.Time, chunkSize int, caps ...h26Cap) string {
	t.Helper()
	return h26PackKey(t, b, layout, cluster, broker, seq, at, chunkSize, nil, caps...)
}

// h26PackKey is h26Pack with chunks sealed with key (nil: none).
func h26PackKey(t *testing.T, b uploader.Bucket, layout archive.Layout, cluster string, broker int32, seq int64, at time.Time, chunkSize int, key *archive.Key, caps ...h26Cap) string {
	t.Helper()
	uid := hex.EncodeToString([]byte{byte(seq), byte(broker), 0xa, 0xb, 1, 2, 3, 4})
	m := archive.TailManifest{Format: archive.TailManifestFormat, Version: archive.ManifestVersionV2, ClusterID: cluster, BrokerID: broker,
		Seq: seq, UploadID: uid, PackKey: layout.TailPackKey(cluster, broker, seq, uid), CapturedAt: at, Agent: "h26 test"}
	codec := archive.NewChunkCodec()
	var pack []byte
	for _, c := range caps {
		tc := archive.TailCapture{LogDir: "/kafka", Topic: c.Topic, Partition: c.Partition, TopicID: c.TopicID, SegmentBase: c.Base,
			From: c.From, To: c.To, PrevSHA256: h26SHA(c.Data[:c.From]), SHA256: h26SHA(c.Data[:c.To]), FirstOffset: -1, LastOffset: -1, MaxTimestamp: -1}
		part := c.Data[c.From:c.To]
		r := segment.NewReader(bytes.NewReader(part), int64(len(part)), "capture", segment.ReaderOptions{BaseOffset: c.Base})
		for r.Next() {
			bt := r.Batch()
			if tc.FirstOffset < 0 {
				tc.FirstOffset = bt.BaseOffset
			}
			tc.LastOffset, tc.LastEpoch = bt.LastOffset(), bt.PartitionLeaderEpoch
			tc.MaxTimestamp = max(tc.MaxTimestamp, bt.MaxTimestamp)
		}
		if c.Hostile {
			tc.FirstOffset, tc.LastOffset = c.Offsets[0], c.Offsets[1]
		} else if err := r.Err(); err != nil {
			t.Fatalf("capture %s-%d [%d, %d) is not whole batches: %v", c.Topic, c.Partition, c.From, c.To, err)
		}
		for off := 0; off < len(part); off += chunkSize {
			raw := part[off:min(off+chunkSize, len(part))]
			start := len(pack)
			var ch archive.Chunk
			var err error
			if pack, ch, err = codec.EncodeChunk(pack, raw, archive.CompressionZstd, 1, key); err != nil {
				t.Fatal(err)
			}
			ch.Offset = int64(start)
			tc.Chunks = append(tc.Chunks, ch)
		}
		if c.Epochs != nil {
			tc.PartitionState = &archive.PartitionState{CapturedAt: at, LeaderEpochCheckpoint: c.Epochs}
		}
		m.Captures = append(m.Captures, tc)
	}
	m.PackSize = int64(len(pack))
	ctx := context.Background()
	if err := b.Create(ctx, m.PackKey, bytes.NewReader(pack), int64(len(pack)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	mkey := layout.TailManifestKey(cluster, broker, seq, uid)
	if err := b.Create(ctx, mkey, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.DecodeTailManifest(mkey, data); err != nil {
		t.Fatal(err)
	}
	return mkey
}

func h26SHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// h26Bounds returns the batch boundaries (byte positions) of a segment.
func h26Bounds(t *testing.T, data []byte, base int64) []int64 {
	t.Helper()
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), "bounds", segment.ReaderOptions{BaseOffset: base})
	out := []int64{0}
	for r.Next() {
		out = append(out, r.Batch().Pos+r.Batch().Size())
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func h26Read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// h26CopyDir copies a fixture dir tree (regular files) into a temp dir.
func h26CopyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "kafka-logs")
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
		return os.Chtimes(out, fi.ModTime(), fi.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// h26Archive archives a log dir's rolled segments once with the agent
// into a new local bucket.
func h26Archive(t *testing.T, dir string) (string, *uploader.Local) {
	t.Helper()
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	ac := agent.Defaults()
	ac.LogDirs, ac.Bucket, ac.StateDir, ac.SettleTime, ac.LowPriority = []string{dir}, "file://"+root, t.TempDir(), 0, false
	enc := archive.NewEncoder(archive.EncoderOptions{TempDir: t.TempDir()})
	a, err := agent.New(ctx, ac, agent.NewArchive(b, enc, archive.EncodeOptions{Compression: archive.CompressionZstd, Level: 1}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.RunOnce(ctx)
	if err != nil || rep.Archived == 0 || rep.Failed+rep.Corrupt > 0 {
		t.Fatalf("archive: %+v %v", rep, err)
	}
	return root, b
}

// h26Restore plans sel and runs the restore into target (toOffset -1: all).
func h26Restore(t *testing.T, b uploader.BucketReader, sel restore.Selection, target string, toOffset int64) (*restore.Plan, *restore.Report, error) {
	t.Helper()
	ctx := context.Background()
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), sel, 4)
	if err != nil {
		return nil, nil, err
	}
	rep, err := restore.Run(ctx, src, plan, restore.Options{Targets: []string{target}, ToOffset: toOffset, ToTime: -1, NodeID: -1})
	return plan, rep, err
}

func h26Part(plan *restore.Plan, topic string, p int32) *restore.PartitionPlan {
	for _, pp := range plan.Partitions {
		if pp.Topic == topic && pp.Partition == p {
			return pp
		}
	}
	return nil
}
