package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// h25Appender is the broker: it appends the real batches of a fixture
// segment to an active segment for ever (offsets renumbered to continue),
// in pieces, so a batch is often half-written when a capture reads.
type h25Appender struct {
	path   string
	src    []byte
	bounds []int64 // batch starts in src, then len(src)
	deltas []int64 // last offset delta of each batch
	mu     sync.Mutex
	next   int64 // next offset
	i      int   // next batch of src
	whole  int64 // bytes of whole batches written
}

func h25NewAppender(t *testing.T, path, src string) *h25Appender {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	a := &h25Appender{path: path, src: data}
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), src, segment.ReaderOptions{BaseOffset: -1})
	for r.Next() {
		a.bounds = append(a.bounds, r.Batch().Pos)
		a.deltas = append(a.deltas, int64(r.Batch().LastOffsetDelta))
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	a.bounds = append(a.bounds, int64(len(data)))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// step appends n batches, the last one in two writes with a pause.
func (a *h25Appender) step(t *testing.T, n int, pause time.Duration) {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	var buf []byte
	for k := 0; k < n; k++ {
		b := append([]byte(nil), a.src[a.bounds[a.i]:a.bounds[a.i+1]]...)
		binary.BigEndian.PutUint64(b, uint64(a.next))
		a.next += a.deltas[a.i] + 1
		a.i = (a.i + 1) % (len(a.bounds) - 1)
		buf = append(buf, b...)
	}
	half := len(buf) - 20
	f.Write(buf[:half])
	time.Sleep(pause) // a torn last batch for a while
	f.Write(buf[half:])
	a.mu.Lock()
	a.whole += int64(len(buf))
	a.mu.Unlock()
}

// h25CountManifests counts the tail manifests in the bucket.
func h25CountManifests(t *testing.T, b uploader.Bucket) int {
	n := 0
	b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if strings.Contains(oi.Key, "/tails/") && strings.HasSuffix(oi.Key, ".json") {
			n++
		}
		return nil
	})
	return n
}

// h25Tail is one committed capture with its bytes.
type h25Tail struct {
	key string
	c   archive.TailCapture
	raw []byte
}

// h25ReadTails reads every committed tail manifest and its captures.
func h25ReadTails(t *testing.T, b uploader.Bucket) (map[string][]byte, []h25Tail) {
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
	bodies := map[string][]byte{}
	var out []h25Tail
	for _, k := range keys {
		data, err := uploader.ReadAll(ctx, b, k, archive.MaxTailManifestSize)
		if err != nil {
			t.Fatal(err)
		}
		bodies[k] = data
		m, err := archive.DecodeTailManifest(k, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Captures) == 0 {
			continue
		}
		pack, err := uploader.ReadAll(ctx, b, m.PackKey, 1<<30)
		if err != nil || int64(len(pack)) != m.PackSize {
			t.Fatalf("%s: pack %s: %v (%d bytes, manifest says %d)", k, m.PackKey, err, len(pack), m.PackSize)
		}
		for _, c := range m.Captures {
			var raw []byte
			for _, ch := range c.Chunks {
				if raw, err = codec.DecodeChunk(raw, pack[ch.Offset:ch.Offset+ch.StoredSize], ch, nil, k); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, h25Tail{key: k, c: c, raw: raw})
		}
	}
	return bodies, out
}

// h25CheckChains: every capture extends a committed prefix (no gap), its
// hash is right, no two captures extend the same prefix (no overlap, no
// duplicate); returns the bytes of the newest chain per partition.
func h25CheckChains(t *testing.T, caps []h25Tail) map[string][]byte {
	t.Helper()
	empty := sha256.Sum256(nil)
	prefix := map[string][]byte{} // partition|base|sha -> bytes [0, To)
	ext := map[string]string{}
	newest := map[string][]byte{}
	for _, c := range caps {
		scope := fmt.Sprintf("%s|%d|%d|", c.c.Topic, c.c.Partition, c.c.SegmentBase)
		prefix[scope+hex.EncodeToString(empty[:])] = []byte{}
		pb, ok := prefix[scope+c.c.PrevSHA256]
		if !ok || int64(len(pb)) != c.c.From {
			t.Fatalf("%s %s [%d,%d): does not extend a committed capture (gap)", c.key, c.c.Topic, c.c.From, c.c.To)
		}
		if other, dup := ext[scope+c.c.PrevSHA256]; dup && c.c.From > 0 {
			t.Fatalf("%s %s [%d,%d): overlaps the capture committed in %s", c.key, c.c.Topic, c.c.From, c.c.To, other)
		}
		ext[scope+c.c.PrevSHA256] = c.key
		all := append(append([]byte(nil), pb...), c.raw...)
		sum := sha256.Sum256(all)
		if hex.EncodeToString(sum[:]) != c.c.SHA256 || int64(len(all)) != c.c.To {
			t.Fatalf("%s %s [%d,%d): sha256 or size does not match", c.key, c.c.Topic, c.c.From, c.c.To)
		}
		prefix[scope+c.c.SHA256] = all
		newest[c.c.Topic] = all
	}
	return newest
}

// TestH25TailKill9: the agent binary is killed with SIGKILL 20 times while
// it captures a growing copy of a real segment (uploads throttled so kills
// land mid-upload), restarted each time. Afterwards every committed
// capture chain is consistent (hashes chain, no gaps, no two committed
// captures of one chain overlap), nothing committed before a kill is
// missing or changed, and the newest chain is the file's whole batches.
func TestH25TailKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	bin := segvaultBin(t)
	logs := filepath.Join(t.TempDir(), "kafka-logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logs, "meta.properties"), []byte("version=1\ncluster.id=h25kill\nnode.id=3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fix := fixturesRoot + "/mscaldas2012__kafka-connect-spooldir/kafka-data/"
	apps := []*h25Appender{
		h25NewAppender(t, filepath.Join(logs, "status-0", "00000000000000000000.log"), fix+"docker-connect-status-0/00000000000000000000.log"),
		h25NewAppender(t, filepath.Join(logs, "configs-0", "00000000000000000000.log"), fix+"docker-connect-configs-0/00000000000000000000.log"),
	}
	srv := miniotest.Start(t)
	bucketName := srv.NewBucket(t)
	b := s3Bucket2(t, srv, bucketName)
	state := t.TempDir()
	args := []string{"--log-format", "json", "agent", "--log-dirs", logs, "--bucket", "s3://" + bucketName, "--s3-endpoint", srv.Endpoint(), "--s3-insecure",
		"--s3-path-style", "--s3-region", "us-east-1", "--state-dir", state, "--settle-time", "0", "--scan-interval", "1s",
		"--listen", "", "--tail-interval", "1s", "--upload-bandwidth", "100000", "--compression", "none"}
	env := append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ctx.Err() == nil; j++ {
				a.step(t, 3+(i+j)%17, time.Duration(20+j%60)*time.Millisecond)
				time.Sleep(time.Duration(30+(j*7)%90) * time.Millisecond)
			}
		}()
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	committed := map[string][]byte{}
	for i := 0; i < 20; i++ {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			time.Sleep(time.Duration(400+rng.Intn(2200)) * time.Millisecond)
		} else {
			// Right after a commit appears: the agent may not have
			// recorded it yet.
			n0 := h25CountManifests(t, b)
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && h25CountManifests(t, b) == n0; {
				time.Sleep(5 * time.Millisecond)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if strings.Contains(stderr.String(), "panic") {
			t.Fatalf("agent panicked:\n%s", stderr.String())
		}
		bodies, _ := h25ReadTails(t, b)
		for k, v := range bodies {
			committed[k] = v
		}
	}
	stop()
	wg.Wait()
	// A last run, stopped cleanly once everything written is captured.
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var chains map[string][]byte
	var caps []h25Tail
	for {
		var bodies map[string][]byte
		bodies, caps = h25ReadTails(t, b)
		chains = h25CheckChains(t, caps)
		done := true
		for _, a := range apps {
			a.mu.Lock()
			whole := a.whole
			a.mu.Unlock()
			if int64(len(chains[strings.TrimSuffix(filepath.Base(filepath.Dir(a.path)), "-0")])) != whole {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			for k, v := range committed {
				if !bytes.Equal(bodies[k], v) {
					t.Errorf("manifest %s committed before a kill is missing or changed", k)
				}
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	for _, a := range apps {
		topic := strings.TrimSuffix(filepath.Base(filepath.Dir(a.path)), "-0")
		file, err := os.ReadFile(a.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := chains[topic]; !bytes.Equal(got, file[:a.whole]) {
			t.Errorf("%s: newest chain %d bytes, the file's whole batches %d (file %d)\n%s", topic, len(got), a.whole, len(file), stderr.String())
		}
	}
	for _, c := range caps {
		file, _ := os.ReadFile(filepath.Join(logs, c.c.Topic+"-0", "00000000000000000000.log"))
		if !bytes.Equal(c.raw, file[c.c.From:c.c.To]) {
			t.Errorf("%s %s [%d,%d): bytes differ from the file", c.key, c.c.Topic, c.c.From, c.c.To)
		}
	}
	marks := 0
	for _, v := range committed {
		if bytes.Contains(v, []byte(`"captures":[]`)) {
			marks++
		}
	}
	t.Logf("20 SIGKILLs: %d committed tail manifests (%d abandon markers of interrupted captures), %d captures; chains consistent", len(committed), marks, len(caps))
}
