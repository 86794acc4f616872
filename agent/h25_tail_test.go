package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// h25Env is a log dir with one growing partition, a local bucket and an
// agent's tailer.
type h25Env struct {
	t      *testing.T
	logs   string
	state  string
	bucket uploader.Bucket
	a      *Agent
	tl     *tailer
	w      *h25Writer
	seg    string
}

func h25Setup(t *testing.T, src string) *h25Env {
	t.Helper()
	e := &h25Env{t: t, logs: h25LogDir(t), state: t.TempDir()}
	b, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.bucket = b
	e.seg = filepath.Join(e.logs, "status-0", "00000000000000000000.log")
	e.w = h25NewWriter(t, e.seg, src)
	e.open()
	return e
}

func (e *h25Env) open() {
	e.a = h25NewAgent(e.t, e.logs, e.state, e.bucket, nil)
	e.tl = newTailer(e.a)
}

// round runs one capture round and returns the committed chains.
func (e *h25Env) round() (map[string][]byte, []h25Committed, int) {
	e.t.Helper()
	e.tl.round(context.Background())
	caps, n := h25Captures(e.t, e.bucket)
	return h25Chains(e.t, caps), caps, n
}

func (e *h25Env) file() []byte {
	b, err := os.ReadFile(e.seg)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestH25TailAppendByteByByte: whole batches are captured as the broker
// appends them; a torn (in-flight) batch waits; an empty round makes no
// request; the chain continues capture after capture.
func TestH25TailAppendByteByByte(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	chains, _, n := e.round()
	if n != 0 || len(chains) != 0 {
		t.Fatalf("empty segment: %d manifests", n)
	}
	e.w.batches(3)
	chains, _, n = e.round()
	if n != 1 || !bytes.Equal(chains["status-0"], e.file()) {
		t.Fatalf("after 3 batches: %d manifests, %d bytes captured of %d", n, len(chains["status-0"]), len(e.file()))
	}
	// Nothing new: no PUT.
	if _, _, n2 := e.round(); n2 != n {
		t.Fatalf("a round without new bytes wrote a manifest (%d -> %d)", n, n2)
	}
	// The next batch, byte by byte: never captured torn.
	next := 0
	for _, b := range e.w.bounds {
		if b > e.w.pos {
			next = b
			break
		}
	}
	for e.w.pos < next {
		e.w.write(max(1, (next-e.w.pos)/3))
		chains, _, _ = e.round()
		if got := len(chains["status-0"]); got != e.w.whole() {
			t.Fatalf("file at %d (whole batches to %d): captured %d", e.w.pos, e.w.whole(), got)
		}
	}
	// Many batches, several rounds, a torn one at the end.
	for i := 0; i < 5; i++ {
		e.w.batches(7)
		e.w.write(30)
		chains, _, _ = e.round()
	}
	file := e.file()
	if got := chains["status-0"]; !bytes.Equal(got, file[:e.w.whole()]) {
		t.Fatalf("captured %d bytes, whole batches end at %d", len(got), e.w.whole())
	}
	caps, _ := h25Captures(t, e.bucket)
	last := caps[len(caps)-1].c
	if last.LastOffset < last.FirstOffset || last.SegmentBase != 0 || last.Topic != "status" || last.TopicID == "" {
		t.Fatalf("capture fields: %+v", last)
	}
	if caps[0].c.PartitionState == nil {
		t.Fatal("the first capture of a chain carries no partition state")
	}
}

// TestH25TailTruncateRewrite: the active segment is truncated and written
// again with other batches (a new leader's log after divergence): a new
// chain from byte 0, and the newest chain is the new content, never a mix.
func TestH25TailTruncateRewrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		grow bool // the rewrite ends past the old captured end
	}{{"shorter", false}, {"longer", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := h25Setup(t, h25StatusLog)
			e.w.batches(20)
			e.round()
			// Truncate to batch 5 and append batches of another segment.
			other := h25NewWriter(t, filepath.Join(t.TempDir(), "x.log"), h25ConfigsLog)
			keep := e.w.bounds[4]
			data := append([]byte(nil), e.file()[:keep]...)
			n := 3
			if tc.grow {
				n = 30
			}
			// A new leader's batches: offsets continue, epoch 7.
			data = append(data, h25Renumber(t, other.src[:other.bounds[n-1]], h25NextOffset(t, data), 7)...)
			if err := os.WriteFile(e.seg, data, 0o644); err != nil { // same inode: truncate + write
				t.Fatal(err)
			}
			chains, caps, _ := e.round()
			if !bytes.Equal(chains["status-0"], data) {
				t.Fatalf("newest chain holds %d bytes, the file %d (a mix?)", len(chains["status-0"]), len(data))
			}
			if c := caps[len(caps)-1].c; c.From != 0 || c.PrevSHA256 != emptySHA256 {
				t.Fatalf("rewrite did not start a new chain: %+v", c)
			}
		})
	}
}

// TestH25TailTruncateToCapturedEnd: a truncation exactly at the captured
// end followed by new batches keeps the chain: the prefix is unchanged.
func TestH25TailTruncateToCapturedEnd(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(10)
	e.round()
	e.w.batches(2)
	data := e.file()[:e.w.bounds[9]] // back to the captured end
	data = append(data, e.w.src[e.w.bounds[9]:e.w.bounds[11]]...)
	if err := os.WriteFile(e.seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	chains, caps, _ := e.round()
	if c := caps[len(caps)-1].c; c.From != int64(e.w.bounds[9]) {
		t.Fatalf("capture from %d, want the chain continued from %d", c.From, e.w.bounds[9])
	}
	if !bytes.Equal(chains["status-0"], data) {
		t.Fatal("chain does not hold the file")
	}
}

// TestH25TailInodeChange: a deleted and recreated topic (a new file with
// the same name) starts a new chain.
func TestH25TailInodeChange(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(10)
	e.round()
	data := e.file()
	tmp := e.seg + ".new"
	if err := os.WriteFile(tmp, data[:e.w.bounds[7]], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.seg); err != nil {
		t.Fatal(err)
	}
	before := h25Counter(e.a.metrics.TailRestarts.WithLabelValues("inode"))
	_, caps, _ := e.round()
	if c := caps[len(caps)-1].c; c.From != 0 {
		t.Fatalf("new file continued the old chain: %+v", c)
	}
	if h25Counter(e.a.metrics.TailRestarts.WithLabelValues("inode")) != before+1 {
		t.Fatal("inode change not counted")
	}
}

// TestH25TailRestartContinuity: a new agent on the same state continues
// the chain (from the captured end, without re-reading) and the seq; with
// the state lost it starts a new chain and the seq after the bucket's.
func TestH25TailRestartContinuity(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(10)
	e.round()
	e.a.Close()
	e.open()
	e.w.batches(5)
	_, caps, _ := e.round()
	c := caps[len(caps)-1]
	if c.c.From != int64(e.w.bounds[9]) || c.c.PrevSHA256 != caps[0].c.SHA256 {
		t.Fatalf("after a restart: capture [%d,%d) prev %s, want from %d prev %s", c.c.From, c.c.To, c.c.PrevSHA256, e.w.bounds[9], caps[0].c.SHA256)
	}
	e.a.Close()
	if err := os.Remove(filepath.Join(e.state, tailStateFile)); err != nil {
		t.Fatal(err)
	}
	e.open()
	e.w.batches(5)
	chains, caps, _ := e.round()
	c2 := caps[len(caps)-1]
	if c2.c.From != 0 || c2.seq != c.seq+1 {
		t.Fatalf("state lost: capture from %d seq %d, want 0 and %d", c2.c.From, c2.seq, c.seq+1)
	}
	if !bytes.Equal(chains["status-0"], e.file()) {
		t.Fatal("newest chain is not the file")
	}
}

// h25Faulty fails selected PutManifest calls: before (nothing written) or
// after (written, error returned: the commit is ambiguous).
type h25Faulty struct {
	Archive
	failPack, failManifestAfter, failManifestBefore atomic.Int32
}

var errH25 = errors.New("injected failure")

func (f *h25Faulty) PutManifest(ctx context.Context, key string, data []byte) error {
	switch {
	case strings.HasSuffix(key, ".pack") && f.failPack.Add(-1) >= 0:
		return errH25
	case strings.Contains(key, "/tails/") && strings.HasSuffix(key, ".json") && f.failManifestBefore.Add(-1) >= 0:
		return errH25
	case strings.Contains(key, "/tails/") && strings.HasSuffix(key, ".json") && f.failManifestAfter.Add(-1) >= 0:
		if err := f.Archive.PutManifest(ctx, key, data); err != nil {
			return err
		}
		return errH25
	}
	return f.Archive.PutManifest(ctx, key, data)
}

// TestH25TailAmbiguousCommit: a manifest PUT that failed (or seemed to)
// is settled before the next capture: adopted when it committed, abandoned
// otherwise; never two committed captures of the same bytes.
func TestH25TailAmbiguousCommit(t *testing.T) {
	for _, mode := range []string{"pack", "before", "after", "after-restart", "before-restart"} {
		t.Run(mode, func(t *testing.T) {
			e := h25Setup(t, h25StatusLog)
			f := &h25Faulty{Archive: NewArchive(e.bucket, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}
			e.a.Close()
			e.a = h25NewAgentOn(t, e.logs, e.state, f, nil)
			e.tl = newTailer(e.a)
			e.w.batches(5)
			e.round()
			e.w.batches(5)
			switch mode {
			case "pack":
				f.failPack.Store(1)
			case "before", "before-restart":
				f.failManifestBefore.Store(1)
			case "after", "after-restart":
				f.failManifestAfter.Store(1)
			}
			e.round()
			if strings.HasSuffix(mode, "-restart") { // kill -9 right after the failed commit
				e.a.Close()
				e.a = h25NewAgentOn(t, e.logs, e.state, f, nil)
				e.tl = newTailer(e.a)
			}
			e.w.batches(5)
			chains, _, _ := e.round() // h25Chains fails on overlap or gap
			chains, _, _ = e.round()
			if !bytes.Equal(chains["status-0"], e.file()) {
				t.Fatalf("newest chain %d bytes, file %d", len(chains["status-0"]), len(e.file()))
			}
		})
	}
}

// TestH25TailRollAndMetadata: a rolled segment stops being captured, the
// new active one is captured from 0; __cluster_metadata-0 is captured too;
// two partitions share one pack per round.
func TestH25TailRollAndMetadata(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	meta := h25NewWriter(t, filepath.Join(e.logs, "__cluster_metadata-0", "00000000000000000000.log"), h25MetaLog)
	e.w.batches(5)
	meta.batches(2)
	chains, caps, n := e.round()
	if n != 1 || len(caps) != 2 || !bytes.Equal(chains["__cluster_metadata-0"], meta.src[:meta.pos]) {
		t.Fatalf("%d manifests, %d captures; metadata chain %d bytes", n, len(caps), len(chains["__cluster_metadata-0"]))
	}
	if caps[0].c.TopicID != MetadataTopicID && caps[1].c.TopicID != MetadataTopicID {
		t.Fatal("metadata capture without the metadata topic id")
	}
	// Roll: a new segment at offset 1000 appears; the old one grows no more.
	e.w.batches(2)
	next := filepath.Join(e.logs, "status-0", "00000000000000001000.log")
	if err := os.WriteFile(next, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, caps, _ = e.round()
	for _, c := range caps {
		if c.c.Topic == "status" && c.c.SegmentBase == 0 && c.c.To > int64(e.w.bounds[4]) {
			t.Fatalf("rolled segment captured after the roll: %+v", c.c)
		}
	}
}

// TestH25TailConfig: the tail options are validated and named; YAML's
// boolean reading of on/off is accepted; unset values take the defaults.
func TestH25TailConfig(t *testing.T) {
	c := Defaults()
	c.LogDirs, c.Bucket, c.StateDir = []string{"/x"}, "file:///y", "/z"
	c.TailCapture, c.TailInterval, c.TailMaxBytes = "maybe", 10*time.Millisecond, 1000
	err := c.Validate()
	for _, opt := range []string{"tail-capture", "tail-interval", "tail-max-bytes"} {
		if err == nil || !strings.Contains(err.Error(), opt) {
			t.Errorf("error does not name %s: %v", opt, err)
		}
	}
	for v, on := range map[string]bool{"on": true, "true": true, "": true, "off": false, "false": false} {
		c := Config{TailCapture: v}
		if c.tailOn() != on {
			t.Errorf("tail-capture %q: on=%v", v, c.tailOn())
		}
	}
	var z Config
	if z.tailInterval() != DefaultTailInterval || z.tailMaxBytes() != DefaultTailMaxBytes {
		t.Error("zero values do not take the defaults")
	}
}

// TestH25TailPreallocatedAndInvalid: zeros after the data (preallocate=true)
// end the capture quietly; an invalid batch stops it there, counted once,
// and the bytes after it wait.
func TestH25TailPreallocatedAndInvalid(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(6)
	f, err := os.OpenFile(e.seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(e.w.pos) + 1<<20); err != nil { // zeros to 1 MiB past the data
		t.Fatal(err)
	}
	f.Close()
	chains, _, _ := e.round()
	if len(chains["status-0"]) != e.w.pos || h25Counter(e.a.metrics.TailSkipped.WithLabelValues("invalid_batch")) != 0 {
		t.Fatalf("preallocated: captured %d of %d; invalid_batch %v", len(chains["status-0"]), e.w.pos, h25Counter(e.a.metrics.TailSkipped.WithLabelValues("invalid_batch")))
	}
	// Overwrite the zeros with two batches, the first with a flipped byte.
	data := e.file()[:e.w.pos]
	good := len(data)
	next := append([]byte(nil), e.w.src[e.w.bounds[5]:e.w.bounds[7]]...)
	next[70] ^= 0xff
	data = append(data, next...)
	if err := os.WriteFile(e.seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		chains, _, _ = e.round()
	}
	if len(chains["status-0"]) != good {
		t.Fatalf("captured %d bytes, the valid prefix is %d", len(chains["status-0"]), good)
	}
	if n := h25Counter(e.a.metrics.TailSkipped.WithLabelValues("invalid_batch")); n != 2 {
		t.Fatalf("invalid_batch counted %v times in 2 rounds", n)
	}
}

// TestH25TailRPO: segvault_agent_rpo_seconds is 0 when every appended byte
// is captured, grows while bytes wait, and counts a rolled segment whose
// last bytes were not captured until it is archived (a rolled segment
// fully captured before its roll counts as archived).
func TestH25TailRPO(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.a.Close()
	e.a = h25NewAgent(t, e.logs, e.state, e.bucket, func(c *Config) { c.SettleTime = time.Hour })
	e.tl = newTailer(e.a)
	rpo := func() float64 { return h25Counter(e.a.metrics.RPOSeconds) }
	e.w.batches(4)
	e.round()
	if rpo() != 0 {
		t.Fatalf("everything captured: rpo %v", rpo())
	}
	e.tl.observe(time.Now())
	e.w.batches(2)
	time.Sleep(300 * time.Millisecond)
	e.tl.observe(time.Now())
	if r := rpo(); r < 0.3 {
		t.Fatalf("bytes waiting 0.3s: rpo %v", r)
	}
	// Roll with those bytes uncaptured; the agent sees the rolled segment.
	if err := os.WriteFile(filepath.Join(e.logs, "status-0", "00000000000000001000.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.round()
	if _, err := e.a.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.tl.updateRPO(time.Now())
	if r := rpo(); r < 0.3 {
		t.Fatalf("rolled segment with uncaptured bytes, not archived: rpo %v", r)
	}
	// Archived: nothing left.
	key := ""
	e.a.mu.Lock()
	for k := range e.a.seen {
		key = k
	}
	delete(e.a.seen, key)
	e.a.mu.Unlock()
	if err := e.a.state.Put(stateEntry{Key: key, Status: statusArchived, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.tl.updateRPO(time.Now())
	if r := rpo(); r != 0 {
		t.Fatalf("rolled segment archived, new one empty: rpo %v", r)
	}
}
