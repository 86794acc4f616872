package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

const h25Fix = "../../shared/fixtures/kafka-real/"

// h25StatusLog is a real 127-batch segment; h25ConfigsLog another (45
// batches); h25MetaLog the batches of a real KRaft snapshot.
var (
	h25StatusLog  = h25Fix + "mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-status-0/00000000000000000000.log"
	h25ConfigsLog = h25Fix + "mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-configs-0/00000000000000000000.log"
	h25MetaLog    = h25Fix + "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/__cluster_metadata-0/00000000000000007364-0000000001.checkpoint"
)

// h25Writer simulates the broker: it appends the real batches of src to
// the active segment at path, whole or byte by byte.
type h25Writer struct {
	t      *testing.T
	path   string
	src    []byte
	bounds []int // batch end positions in src
	pos    int   // bytes of src written
}

func h25NewWriter(t *testing.T, path, src string) *h25Writer {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	w := &h25Writer{t: t, path: path, src: data}
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), src, segment.ReaderOptions{BaseOffset: -1})
	for r.Next() {
		w.bounds = append(w.bounds, int(r.Batch().Pos+r.Batch().Size()))
	}
	if r.Err() != nil || len(w.bounds) < 3 {
		t.Fatalf("fixture %s: %v (%d batches)", src, r.Err(), len(w.bounds))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return w
}

// write appends n bytes of src.
func (w *h25Writer) write(n int) {
	w.t.Helper()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	n = min(n, len(w.src)-w.pos)
	if _, err := f.Write(w.src[w.pos : w.pos+n]); err != nil {
		w.t.Fatal(err)
	}
	w.pos += n
}

// batches appends the next n whole batches (completing a torn one first).
func (w *h25Writer) batches(n int) {
	w.t.Helper()
	for _, b := range w.bounds {
		if b > w.pos {
			n--
			if n == 0 || b == w.bounds[len(w.bounds)-1] {
				w.write(b - w.pos)
				return
			}
		}
	}
}

// whole is the end of the last complete batch written.
func (w *h25Writer) whole() int {
	end := 0
	for _, b := range w.bounds {
		if b <= w.pos {
			end = b
		}
	}
	return end
}

// h25LogDir makes a log dir with meta.properties (cluster c1, broker 1).
func h25LogDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	meta := "version=1\ncluster.id=h25cluster\nnode.id=1\n"
	if err := os.WriteFile(filepath.Join(dir, "meta.properties"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// h25NewAgent opens an agent over logs with state in state on store b.
func h25NewAgent(t *testing.T, logs, state string, b uploader.Bucket, mod func(*Config)) *Agent {
	t.Helper()
	return h25NewAgentOn(t, logs, state, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}), mod)
}

func h25NewAgentOn(t *testing.T, logs, state string, store Archive, mod func(*Config)) *Agent {
	t.Helper()
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.LowPriority, cfg.StagingBudget = []string{logs}, "file://x", state, false, 0
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(context.Background(), cfg, store, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// h25Committed is one committed capture, with its bytes.
type h25Committed struct {
	seq int64
	key string
	c   archive.TailCapture
	raw []byte
}

// h25Captures reads every committed tail manifest in the bucket (in seq
// order) and every capture's bytes from its pack, checking each chunk.
func h25Captures(t *testing.T, b uploader.Bucket, ckeys ...*archive.Key) (caps []h25Committed, manifests int) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	if err := b.List(ctx, "", func(oi uploader.ObjectInfo) error {
		if strings.Contains(oi.Key, "/tails/") && strings.HasSuffix(oi.Key, ".json") {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	codec := archive.NewChunkCodec()
	lastSeq := int64(0)
	for _, k := range keys {
		data, err := uploader.ReadAll(ctx, b, k, archive.MaxTailManifestSize)
		if err != nil {
			t.Fatal(err)
		}
		m, err := archive.DecodeTailManifest(k, data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Seq <= lastSeq {
			t.Fatalf("%s: seq %d not above the previous %d", k, m.Seq, lastSeq)
		}
		lastSeq = m.Seq
		manifests++
		if len(m.Captures) == 0 {
			continue // an abandon marker
		}
		pack, err := uploader.ReadAll(ctx, b, m.PackKey, 1<<30)
		if err != nil {
			t.Fatalf("%s: pack: %v", k, err)
		}
		if int64(len(pack)) != m.PackSize {
			t.Fatalf("%s: pack %d bytes, manifest says %d", k, len(pack), m.PackSize)
		}
		for _, c := range m.Captures {
			var raw []byte
			for i, ch := range c.Chunks {
				if ch.Key != "" {
					t.Fatalf("%s: chunk %d in %q, not the pack", k, i, ch.Key)
				}
				raw, err = codec.DecodeChunk(raw, pack[ch.Offset:ch.Offset+ch.StoredSize], ch, ckeys, k)
				if err != nil {
					t.Fatal(err)
				}
			}
			caps = append(caps, h25Committed{seq: m.Seq, key: k, c: c, raw: raw})
		}
	}
	return caps, manifests
}

// h25Chains checks every committed capture against the chain rules: its
// PrevSHA256 names bytes [0, From) some earlier capture (or nothing, at 0)
// ends with, its SHA256 is the hash of those plus its bytes, no two
// captures of one chain (same prefix hash) overlap; and returns per
// partition (topic-partition) the bytes of the chain ending in the newest
// capture.
func h25Chains(t *testing.T, caps []h25Committed) map[string][]byte {
	t.Helper()
	empty := sha256.Sum256(nil)
	prefix := map[string][]byte{} // partition|base|sha -> bytes [0, To)
	ext := map[string]string{}    // prev sha -> capture key extending it
	newest := map[string][]byte{}
	for _, c := range caps {
		scope := fmt.Sprintf("%s|%d|%d|", c.c.Topic, c.c.Partition, c.c.SegmentBase)
		prefix[scope+hex.EncodeToString(empty[:])] = []byte{}
		pb, ok := prefix[scope+c.c.PrevSHA256]
		if !ok {
			t.Fatalf("%s %s-%d [%d,%d): no committed capture ends with its prev_sha256 (a gap)", c.key, c.c.Topic, c.c.Partition, c.c.From, c.c.To)
		}
		if int64(len(pb)) != c.c.From {
			t.Fatalf("%s %s-%d: prefix of %d bytes, From %d", c.key, c.c.Topic, c.c.Partition, len(pb), c.c.From)
		}
		if other, dup := ext[scope+c.c.PrevSHA256]; dup && c.c.From > 0 {
			t.Fatalf("%s %s-%d [%d,%d): overlaps the committed capture in %s of the same chain", c.key, c.c.Topic, c.c.Partition, c.c.From, c.c.To, other)
		}
		ext[scope+c.c.PrevSHA256] = c.key
		all := append(append([]byte(nil), pb...), c.raw...)
		sum := sha256.Sum256(all)
		if hex.EncodeToString(sum[:]) != c.c.SHA256 || int64(len(all)) != c.c.To {
			t.Fatalf("%s %s-%d [%d,%d): sha256 or size does not match its bytes", c.key, c.c.Topic, c.c.Partition, c.c.From, c.c.To)
		}
		prefix[scope+c.c.SHA256] = all
		newest[c.c.Topic+"-"+itoa32(c.c.Partition)] = all
	}
	return newest
}

func itoa32(p int32) string { return strconv.Itoa(int(p)) }

func h25Counter(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.GetGauge().GetValue()
}

// h25Renumber rewrites the batches in data to start at offset first with
// leader epoch epoch (fields outside the CRC), as a new leader's log would.
func h25Renumber(t *testing.T, data []byte, first int64, epoch int32) []byte {
	t.Helper()
	out := append([]byte(nil), data...)
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), "renumber", segment.ReaderOptions{BaseOffset: -1})
	next := first
	for r.Next() {
		b := r.Batch()
		binary.BigEndian.PutUint64(out[b.Pos:], uint64(next))
		binary.BigEndian.PutUint32(out[b.Pos+12:], uint32(epoch))
		next += int64(b.LastOffsetDelta) + 1
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return out
}

// h25NextOffset is the offset after the last batch in data.
func h25NextOffset(t *testing.T, data []byte) int64 {
	t.Helper()
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), "next", segment.ReaderOptions{BaseOffset: -1})
	next := int64(0)
	for r.Next() {
		next = r.Batch().NextOffset()
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return next
}
