package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// h1Fixture is a real broker-written partition with one rolled segment
// (0, 64548 bytes, 14 index entries) and an active one (862).
const (
	h1FixtureLogDir = "../../shared/fixtures/kafka-real/NikhilDighe9975__kafka_setup/kafka-logs"
	h1FixturePart   = "__consumer_offsets-12"
)

// h1LogDir copies the fixture partition (and meta.properties) into a fresh
// writable log dir and returns the log dir and the partition dir.
func h1LogDir(t *testing.T) (string, string) {
	t.Helper()
	logDir := filepath.Join(t.TempDir(), "kafka-logs")
	part := filepath.Join(logDir, h1FixturePart)
	if err := os.MkdirAll(part, 0o755); err != nil {
		t.Fatal(err)
	}
	h1Copy(t, filepath.Join(h1FixtureLogDir, "meta.properties"), filepath.Join(logDir, "meta.properties"))
	ents, err := os.ReadDir(filepath.Join(h1FixtureLogDir, h1FixturePart))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		h1Copy(t, filepath.Join(h1FixtureLogDir, h1FixturePart, e.Name()), filepath.Join(part, e.Name()))
	}
	return logDir, part
}

func h1Copy(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// h1BatchPrefix returns the bytes of the first n whole batches of a real segment.
func h1BatchPrefix(t *testing.T, path string, n int) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), path, segment.ReaderOptions{BaseOffset: -1})
	end := int64(0)
	for i := 0; i < n && r.Next(); i++ {
		end = r.Batch().Pos + r.Batch().Size()
	}
	if r.Err() != nil || end == 0 {
		t.Fatalf("%s: %v (end %d)", path, r.Err(), end)
	}
	return data[:end]
}

func h1Names(c candidate) string {
	var s []string
	for _, f := range c.Files {
		n := f.Name
		if f.Src != "" {
			n += "<" + f.Src
		}
		s = append(s, n)
	}
	return strings.Join(s, ",")
}

func h1Find(ps partitionScan, base int64) *candidate {
	for i := range ps.Candidates {
		if ps.Candidates[i].Kind == "segment" && ps.Candidates[i].Base == base {
			return &ps.Candidates[i]
		}
	}
	return nil
}

// The shape: N.log.swap, N.index.swap and N.timeindex.cleaned beside
// N.log. Kafka's LogLoader deletes swap files at or above the lowest .cleaned
// offset and every .cleaned file, so it loads the original N.log: salvage
// archives exactly that.
func TestH1SwapInterruptedSalvage(t *testing.T) {
	logDir, part := h1LogDir(t)
	os.WriteFile(filepath.Join(part, "00000000000000000000.log.swap"), h1BatchPrefix(t, filepath.Join(part, "00000000000000000000.log"), 3), 0o644)
	h1Copy(t, filepath.Join(part, "00000000000000000000.index"), filepath.Join(part, "00000000000000000000.index.swap"))
	h1Copy(t, filepath.Join(part, "00000000000000000000.timeindex"), filepath.Join(part, "00000000000000000000.timeindex.cleaned"))
	dn, _ := segment.ParseDirName(h1FixturePart)
	ps, err := scanPartition(logDir, dn, part, true)
	if err != nil {
		t.Fatal(err)
	}
	c := h1Find(ps, 0)
	if c == nil || h1Find(ps, 862) == nil {
		t.Fatalf("salvage of an interrupted swap yields %d candidates, want segments 0 and 862 (unstable: %q)", len(ps.Candidates), ps.Unstable)
	}
	if got := h1Names(*c); got != "00000000000000000000.log,00000000000000000000.index,00000000000000000000.timeindex,00000000000000000862.snapshot" {
		t.Errorf("segment 0 files: %s", got)
	}
	if c.Files[0].Size != 64548 || c.NextBase != 862 {
		t.Errorf("segment 0 is not the original: %+v next %d", c.Files[0], c.NextBase)
	}
}

// A complete swap (every file .swap, no .cleaned) replaces the segments whose
// offsets it covers: salvage archives the .swap content under the final name.
func TestH1SwapCompleteSalvage(t *testing.T) {
	logDir, part := h1LogDir(t)
	prefix := h1BatchPrefix(t, filepath.Join(part, "00000000000000000000.log"), 3)
	os.WriteFile(filepath.Join(part, "00000000000000000000.log.swap"), prefix, 0o644)
	os.WriteFile(filepath.Join(part, "00000000000000000000.index.swap"), nil, 0o644)
	h1Copy(t, filepath.Join(part, "00000000000000000000.timeindex"), filepath.Join(part, "00000000000000000000.timeindex.swap"))
	dn, _ := segment.ParseDirName(h1FixturePart)
	ps, err := scanPartition(logDir, dn, part, true)
	if err != nil {
		t.Fatal(err)
	}
	c := h1Find(ps, 0)
	if c == nil || h1Find(ps, 862) == nil {
		t.Fatalf("salvage of a complete swap yields %d candidates, want 0 and 862 (unstable: %q)", len(ps.Candidates), ps.Unstable)
	}
	if got := h1Names(*c); got != "00000000000000000000.log<00000000000000000000.log.swap,00000000000000000000.index<00000000000000000000.index.swap,00000000000000000000.timeindex<00000000000000000000.timeindex.swap,00000000000000000862.snapshot" {
		t.Errorf("segment 0 files: %s", got)
	}
	if c.Files[0].Size != int64(len(prefix)) {
		t.Errorf("segment 0 size %d, want the swap's %d", c.Files[0].Size, len(prefix))
	}
}

// In the live daemon a swap holds back only the segments it covers.
func TestH1SwapLiveHoldsOnlyCovered(t *testing.T) {
	logDir, part := h1LogDir(t)
	dn, _ := segment.ParseDirName(h1FixturePart)
	h1Copy(t, filepath.Join(part, "00000000000000000000.timeindex"), filepath.Join(part, "00000000000000000000.timeindex.cleaned"))
	ps, err := scanPartition(logDir, dn, part, false)
	if err != nil || h1Find(ps, 0) == nil {
		t.Fatalf("a .cleaned file holds back segment 0: %v, unstable %q", err, ps.Unstable)
	}
	if c := h1Find(ps, 0); c.Files[0].Src != "" {
		t.Errorf("live daemon reads a temporary file: %s", h1Names(*c))
	}
	os.Remove(filepath.Join(part, "00000000000000000000.timeindex.cleaned"))
	h1Copy(t, filepath.Join(part, "00000000000000000862.log"), filepath.Join(part, "00000000000000000862.log.swap"))
	ps, err = scanPartition(logDir, dn, part, false)
	if err != nil || h1Find(ps, 0) == nil {
		t.Fatalf("a swap at 862 holds back segment 0: %v, unstable %q", err, ps.Unstable)
	}
	if ps.Unstable == "" {
		t.Error("the pending swap is not reported")
	}
	os.WriteFile(filepath.Join(part, "00000000000000000000.log.swap"), h1BatchPrefix(t, filepath.Join(part, "00000000000000000000.log"), 3), 0o644)
	ps, _ = scanPartition(logDir, dn, part, false)
	if h1Find(ps, 0) != nil {
		t.Error("segment 0 is covered by a pending swap but was offered for archiving")
	}
}

// h1Agent builds an agent over a local bucket, logging into buf.
func h1Agent(t *testing.T, logDir string, mod func(*Config)) (*Agent, *h1Buf, uploader.Bucket) {
	t.Helper()
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority = []string{logDir}, "file://x", t.TempDir(), 0, false
	cfg.ScanInterval = 50 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	buf := &h1Buf{}
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), NewMetrics(nil), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, buf, b
}

type h1Buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (h *h1Buf) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.b.Write(p)
}

func (h *h1Buf) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.b.String()
}

func h1Manifests(t *testing.T, b uploader.Bucket) map[int64]*archive.SegmentManifest {
	t.Helper()
	ctx := context.Background()
	out := map[int64]*archive.SegmentManifest{}
	err := b.List(ctx, "", func(oi uploader.ObjectInfo) error {
		if _, k, ok := archive.GuessKey(oi.Key); !ok || !k.IsManifest() {
			return nil
		}
		data, err := uploader.ReadAll(ctx, b, oi.Key, archive.MaxManifestSize)
		if err != nil {
			return err
		}
		m, err := archive.DecodeSegmentManifest(oi.Key, data)
		if err != nil {
			return err
		}
		out[m.BaseOffset] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// In the live daemon a swap that persists is reported once (WARN and a
// gauge) and the partition's other segments are archived meanwhile.
func TestH1SwapPendingReported(t *testing.T) {
	logDir, part := h1LogDir(t)
	h1Copy(t, filepath.Join(part, "00000000000000000862.log"), filepath.Join(part, "00000000000000000862.log.swap"))
	a, logs, b := h1Agent(t, logDir, nil)
	ctx := context.Background()
	wait := a.startWork(ctx)
	for i := 0; i < 6; i++ {
		if _, err := a.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		a.wg.Wait()
		time.Sleep(40 * time.Millisecond)
	}
	wait()
	if _, ok := h1Manifests(t, b)[0]; !ok {
		t.Error("segment 0 was held back by a swap at 862")
	}
	n := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "cleaner swap") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("pending swap logged %d times, want once:\n%s", n, logs)
	}
	if v := h1Value(a.metrics.CleanerSwapPending.WithLabelValues(h1FixturePart[:len(h1FixturePart)-3], "12")); v != 1 {
		t.Errorf("segvault_agent_cleaner_swap_pending = %v, want 1", v)
	}
	os.Remove(filepath.Join(part, "00000000000000000862.log.swap"))
	a.Pass(ctx)
	if v := h1Value(a.metrics.CleanerSwapPending.WithLabelValues(h1FixturePart[:len(h1FixturePart)-3], "12")); v != 0 {
		t.Errorf("swap gone, gauge still %v", v)
	}
}

// A rolled segment whose .index has a zero-filled tail is archived after a
// bounded wait, without that index (restore rebuilds it), and the wait is
// logged once and counted by reason.
func TestH1IndexZeroTail(t *testing.T) {
	logDir, part := h1LogDir(t)
	f, err := os.OpenFile(filepath.Join(part, "00000000000000000000.index"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 8*1000))
	f.Close()
	dn, _ := segment.ParseDirName(h1FixturePart)
	ps, err := scanPartition(logDir, dn, part, false)
	if err != nil {
		t.Fatal(err)
	}
	c := h1Find(ps, 0)
	if c == nil {
		t.Fatal("a rolled segment with a zero-filled index tail is not even considered")
	}
	if got := h1Names(*c); strings.Contains(got, ".index") || c.SettleWait != "index_zero_tail" {
		t.Errorf("files %s, wait %q", got, c.SettleWait)
	}
	a, logs, b := h1Agent(t, logDir, nil)
	start := time.Now()
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archived != 1 || rep.Failed != 0 {
		t.Fatalf("%+v", rep)
	}
	if d := time.Since(start); d < 3*a.cfg.ScanInterval {
		t.Errorf("archived after %v, before the bounded wait", d)
	}
	m := h1Manifests(t, b)[0]
	if m == nil {
		t.Fatal("segment 0 not archived")
	}
	for _, f := range m.Files {
		if f.Name == "00000000000000000000.index" {
			t.Error("the zero-tailed index was archived")
		}
	}
	if n := strings.Count(logs.String(), "index_zero_tail"); n != 1 {
		t.Errorf("wait logged %d times:\n%s", n, logs)
	}
	if v := h1Value(a.metrics.SettleWaits.WithLabelValues("index_zero_tail")); v != 1 {
		t.Errorf("settle_waits_total{reason=index_zero_tail} = %v", v)
	}
}

// Salvage of a torn active segment archives exactly its valid prefix and
// reports it truncated, not corrupt.
func TestH1TornActiveSalvage(t *testing.T) {
	logDir, part := h1LogDir(t)
	active := filepath.Join(part, "00000000000000000862.log")
	orig, _ := os.ReadFile(active)
	// A torn tail: the first 40 bytes of a real batch (its header, cut).
	torn := append(append([]byte{}, orig...), orig[:40]...)
	os.WriteFile(active, torn, 0o644)
	a, logs, b := h1Agent(t, logDir, func(c *Config) { c.IncludeActive = true })
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Corrupt != 0 || rep.Truncated != 1 || rep.Archived != 2 {
		t.Fatalf("want 2 archived, 1 truncated, 0 corrupt: %+v", rep)
	}
	m := h1Manifests(t, b)[862]
	if m == nil {
		t.Fatal("active segment not archived")
	}
	lf, _ := m.LogFile()
	sum := sha256.Sum256(orig)
	if lf.Size != int64(len(orig)) || lf.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("archived %d bytes sha %s, want the %d-byte valid prefix", lf.Size, lf.SHA256, len(orig))
	}
	if m.NextSegmentBase != m.Summary.LastOffset+1 || m.Summary.Size != int64(len(orig)) {
		t.Errorf("manifest next %d, summary %+v", m.NextSegmentBase, m.Summary)
	}
	if !strings.Contains(logs.String(), "truncated") || !strings.Contains(logs.String(), "317") {
		t.Errorf("truncation not logged with its byte position:\n%s", logs)
	}
}

// One dir under several spellings is one log dir.
func TestH1LogDirsResolved(t *testing.T) {
	logDir, _ := h1LogDir(t)
	abs, _ := filepath.Abs(logDir)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(abs, link); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(abs))
	a, _, _ := h1Agent(t, logDir, func(c *Config) {
		c.LogDirs = []string{filepath.Base(abs), "./" + filepath.Base(abs) + "/", abs, link}
	})
	real, _ := filepath.EvalSymlinks(abs)
	if got := a.LogDirs(); len(got) != 1 || got[0] != real {
		t.Fatalf("log dirs %q, want [%s]", got, real)
	}
}

var _ = io.Discard

// h1Value reads a counter's or gauge's value.
func h1Value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// A partition dir that cannot be scanned is a failure of that partition
// only: the other log dir (JBOD) is archived in the same pass, and what was
// seen in the failing dir is neither lost nor forgotten.
func TestH1ScanErrorIsolated(t *testing.T) {
	bad, badPart := h1LogDir(t)
	good, _ := h1LogDir(t)
	a, _, b := h1Agent(t, bad, func(c *Config) { c.LogDirs = []string{bad, good}; c.SettleTime = time.Hour })
	ctx := context.Background()
	wait := a.startWork(ctx)
	defer wait()
	if _, err := a.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	// The index becomes unreadable (a directory in its place: EISDIR).
	idx := filepath.Join(badPart, "00000000000000000000.index")
	os.Remove(idx)
	os.Mkdir(idx, 0o755)
	noSettle := a.cfg
	noSettle.SettleTime = 0
	a.live.Store(newSnapshot(noSettle))
	rep, err := a.Pass(ctx)
	if err != nil {
		t.Fatalf("one bad partition stops the pass: %v", err)
	}
	a.wg.Wait()
	if rep.Failed != 1 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Error(), badPart) {
		t.Errorf("failure not reported with its dir: %+v", rep)
	}
	if len(h1Manifests(t, b)) != 1 {
		t.Errorf("the good log dir was not archived: %d manifests", len(h1Manifests(t, b)))
	}
	if v := h1Value(a.metrics.SegmentsLost); v != 0 {
		t.Errorf("%v segments recorded lost", v)
	}
	a.mu.Lock()
	kept := false
	for _, o := range a.seen {
		kept = kept || o.c.DirPath == badPart
	}
	a.mu.Unlock()
	if !kept {
		t.Error("the failing partition's segment was forgotten")
	}
}
