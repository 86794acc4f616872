package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
)

// A real broker-written log dir (ZooKeeper-era 3.x, cluster id in
// meta.properties) whose partitions have one rolled and one active segment.
const h1Fixture = fixturesRoot + "/NikhilDighe9975__kafka_setup/kafka-logs"

// h1LogDir builds a log dir holding copies of the fixture's meta.properties
// and the named partition dirs.
func h1LogDir(t *testing.T, parts ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h1CopyFile(t, filepath.Join(h1Fixture, "meta.properties"), filepath.Join(dir, "meta.properties"))
	for _, p := range parts {
		src := copyTree(t, filepath.Join(h1Fixture, p))
		if err := os.Rename(src, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func h1CopyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func h1Read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// h1Prefix returns the first n whole batches of a real segment file.
func h1Prefix(t *testing.T, path string, n int) []byte {
	t.Helper()
	data := h1Read(t, path)
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), path, segment.ReaderOptions{BaseOffset: -1})
	end := int64(0)
	for i := 0; i < n && r.Next(); i++ {
		end = r.Batch().Pos + r.Batch().Size()
	}
	if r.Err() != nil || end == 0 {
		t.Fatalf("%s: %v", path, r.Err())
	}
	return data[:end]
}

// h1Env is a MinIO bucket and the segvault binary's store arguments for it.
type h1Env struct {
	srv    *miniotest.Server
	bucket string
	store  []string
	env    []string
}

func h1Start(t *testing.T) *h1Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	return &h1Env{srv: srv, bucket: name,
		store: []string{"--bucket", "s3://" + name, "--s3-endpoint", srv.Endpoint(), "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1"},
		env:   append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())}
}

// run runs the segvault binary (bin) and returns stdout, stderr and the exit code.
func (e *h1Env) run(t *testing.T, bin string, cred *syscall.Credential, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = e.env
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), "panic") {
		t.Fatalf("segvault panicked:\n%s", errb.String())
	}
	return out.String(), errb.String(), code
}

func (e *h1Env) agent(t *testing.T, state string, logDirs []string, extra ...string) (string, string, int) {
	t.Helper()
	args := []string{"agent", "--once", "--listen", "", "--settle-time", "0", "--scan-interval", "200ms", "--state-dir", state}
	for _, d := range logDirs {
		args = append(args, "--log-dirs", d)
	}
	return e.run(t, segvaultBin(t), nil, append(append(args, e.store...), extra...)...)
}

// restore restores everything into a fresh target dir through the binary,
// after `segvault ls` lists the partitions it should find.
func (e *h1Env) restore(t *testing.T, wantParts ...string) string {
	t.Helper()
	out, errOut, code := e.run(t, segvaultBin(t), nil, append([]string{"ls", "--json"}, e.store...)...)
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s\n%s", code, out, errOut)
	}
	var parts []struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Segments  int    `json:"segments"`
	}
	if err := json.Unmarshal([]byte(out), &parts); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, p := range parts {
		listed[p.Topic+"-"+itoa(p.Partition)] = p.Segments > 0
	}
	for _, p := range wantParts {
		if !listed[p] {
			t.Errorf("segvault ls does not list %s:\n%s", p, out)
		}
	}
	target := filepath.Join(t.TempDir(), "restored")
	out, errOut, code = e.run(t, segvaultBin(t), nil, append([]string{"restore", "--target", target}, e.store...)...)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	return target
}

// manifest returns the committed manifest of partition part at base.
func (e *h1Env) manifest(t *testing.T, part string, base int64) *archive.SegmentManifest {
	t.Helper()
	for _, m := range manifests(t, s3Bucket2(t, e.srv, e.bucket)) {
		if m.Topic+"-"+itoa(m.Partition) == part && m.BaseOffset == base {
			return m
		}
	}
	return nil
}

func h1Sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestH1SalvageCleanerSwap: salvage of a stopped broker's dir with a
// log-cleaner swap archives what Kafka's LogLoader would load. Partition 12
// has the shape (N.log.swap, N.index.swap, N.timeindex.cleaned beside
// N.log): the swap is incomplete and discarded, the original N.log is
// archived. Partition 49 has a complete swap (every file .swap): its content
// replaces the segment it covers.
func TestH1SalvageCleanerSwap(t *testing.T) {
	e := h1Start(t)
	dir := h1LogDir(t, "__consumer_offsets-12", "__consumer_offsets-49")
	p12, p49 := filepath.Join(dir, "__consumer_offsets-12"), filepath.Join(dir, "__consumer_offsets-49")
	const seg0 = "00000000000000000000"
	orig12 := h1Read(t, filepath.Join(p12, seg0+".log"))
	os.WriteFile(filepath.Join(p12, seg0+".log.swap"), h1Prefix(t, filepath.Join(p12, seg0+".log"), 3), 0o644)
	h1CopyFile(t, filepath.Join(p12, seg0+".index"), filepath.Join(p12, seg0+".index.swap"))
	h1CopyFile(t, filepath.Join(p12, seg0+".timeindex"), filepath.Join(p12, seg0+".timeindex.cleaned"))
	// Partition 49: the cleaned segment is a batch-aligned part of the real one.
	cleaned := h1Prefix(t, filepath.Join(p49, seg0+".log"), 1)
	if len(cleaned) == len(h1Read(t, filepath.Join(p49, seg0+".log"))) {
		t.Fatal("fixture segment has one batch: not a useful swap")
	}
	os.WriteFile(filepath.Join(p49, seg0+".log.swap"), cleaned, 0o644)
	h1CopyFile(t, filepath.Join(p49, seg0+".index"), filepath.Join(p49, seg0+".index.swap"))
	h1CopyFile(t, filepath.Join(p49, seg0+".timeindex"), filepath.Join(p49, seg0+".timeindex.swap"))

	out, errOut, code := e.agent(t, t.TempDir(), []string{dir}, "--include-active")
	if code != 0 || !strings.Contains(out, "0 failed") {
		t.Fatalf("agent --once --include-active: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, w := range []struct {
		part string
		base int64
		data []byte
	}{{"__consumer_offsets-12", 0, orig12}, {"__consumer_offsets-49", 0, cleaned}} {
		m := e.manifest(t, w.part, w.base)
		if m == nil {
			t.Fatalf("%s base %d not archived:\n%s\n%s", w.part, w.base, out, errOut)
		}
		if lf, _ := m.LogFile(); lf.Size != int64(len(w.data)) || lf.SHA256 != h1Sha(w.data) {
			t.Errorf("%s base %d: archived %d bytes, want the %d Kafka would load", w.part, w.base, lf.Size, len(w.data))
		}
		for _, f := range m.Files {
			if strings.HasSuffix(f.Name, ".swap") || strings.HasSuffix(f.Name, ".cleaned") {
				t.Errorf("%s: temporary file %s archived", w.part, f.Name)
			}
		}
	}
	for _, p := range []string{"__consumer_offsets-12", "__consumer_offsets-49"} {
		if e.manifest(t, p, map[string]int64{"__consumer_offsets-12": 862, "__consumer_offsets-49": 2}[p]) == nil {
			t.Errorf("%s: active segment not archived", p)
		}
	}
	if !strings.Contains(errOut, "cleaner swap") {
		t.Errorf("the interrupted swap is not reported:\n%s", errOut)
	}
	target := e.restore(t, "__consumer_offsets-12", "__consumer_offsets-49")
	if got := h1Read(t, filepath.Join(target, "__consumer_offsets-12", seg0+".log")); !bytes.Equal(got, orig12) {
		t.Errorf("restored 12/0.log: %d bytes, want the original %d", len(got), len(orig12))
	}
	if got := h1Read(t, filepath.Join(target, "__consumer_offsets-49", seg0+".log")); !bytes.Equal(got, cleaned) {
		t.Errorf("restored 49/0.log: %d bytes, want the swap's %d", len(got), len(cleaned))
	}
}

// TestH1ZeroFilledIndex: a rolled segment whose .index has a zero-filled
// tail (an unclean stop) is archived after a bounded wait, and restore
// rebuilds its index.
func TestH1ZeroFilledIndex(t *testing.T) {
	e := h1Start(t)
	dir := h1LogDir(t, "__consumer_offsets-12")
	part := filepath.Join(dir, "__consumer_offsets-12")
	idx := filepath.Join(part, "00000000000000000000.index")
	f, err := os.OpenFile(idx, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 8<<10)) // preallocated slots never trimmed
	f.Close()
	start := time.Now()
	out, errOut, code := e.agent(t, t.TempDir(), []string{dir})
	if code != 0 || !strings.Contains(out, "1 segments archived") {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	if time.Since(start) < 600*time.Millisecond {
		t.Errorf("archived before the bounded wait (3 scan intervals)")
	}
	if !strings.Contains(errOut, "index_zero_tail") {
		t.Errorf("the wait is not logged:\n%s", errOut)
	}
	m := e.manifest(t, "__consumer_offsets-12", 0)
	if m == nil {
		t.Fatal("segment 0 not archived")
	}
	for _, f := range m.Files {
		if f.Name == "00000000000000000000.index" {
			t.Errorf("the zero-filled index was archived (%d bytes)", f.Size)
		}
	}
	target := e.restore(t, "__consumer_offsets-12")
	rp := filepath.Join(target, "__consumer_offsets-12")
	if got, want := h1Read(t, filepath.Join(rp, "00000000000000000000.log")), h1Read(t, filepath.Join(part, "00000000000000000000.log")); !bytes.Equal(got, want) {
		t.Error("restored .log differs")
	}
	got := h1Read(t, filepath.Join(rp, "00000000000000000000.index"))
	if len(got) == 0 || len(got)%8 != 0 || bytes.Equal(got[len(got)-8:], make([]byte, 8)) {
		t.Errorf("restored .index is not a rebuilt, trimmed index: %d bytes", len(got))
	}
}

// TestH1TornActiveSegment: salvage of a stopped broker whose last segment
// ends in a partial batch archives it up to its last complete batch,
// reported as truncated (with the byte position), not corrupt.
func TestH1TornActiveSegment(t *testing.T) {
	h1SalvageTornTail(t, "torn active segment", func(orig []byte) []byte { return orig[:40] }) // a batch cut after its header
}

// h1SalvageTornTail appends tail(orig) to the active segment of a copied
// real log dir and checks that salvage archives (and restore brings back)
// exactly the valid prefix, reported truncated at its byte position.
func h1SalvageTornTail(t *testing.T, what string, tail func(orig []byte) []byte) {
	t.Helper()
	e := h1Start(t)
	dir := h1LogDir(t, "__consumer_offsets-12")
	active := filepath.Join(dir, "__consumer_offsets-12", "00000000000000000862.log")
	orig := h1Read(t, active)
	if err := os.WriteFile(active, append(append([]byte{}, orig...), tail(orig)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.agent(t, t.TempDir(), []string{dir}, "--include-active")
	if code != 0 || !strings.Contains(out, "0 corrupt") || !strings.Contains(out, "1 torn active segments archived truncated") {
		t.Fatalf("agent --once --include-active: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "truncated_at_byte=317") {
		t.Errorf("the truncation's byte position is not logged:\n%s", errOut)
	}
	m := e.manifest(t, "__consumer_offsets-12", 862)
	if m == nil {
		t.Fatal(what + " not archived")
	}
	if lf, _ := m.LogFile(); lf.Size != int64(len(orig)) || lf.SHA256 != h1Sha(orig) {
		t.Errorf("archived %d bytes, want exactly the %d-byte valid prefix", lf.Size, len(orig))
	}
	target := e.restore(t, "__consumer_offsets-12")
	if got := h1Read(t, filepath.Join(target, "__consumer_offsets-12", "00000000000000000862.log")); !bytes.Equal(got, orig) {
		t.Errorf("restored %d bytes, want the %d-byte valid prefix", len(got), len(orig))
	}
}

// TestH1ScanIsolation: an unreadable partition dir and a broken log dir
// (JBOD) do not stop the rest being archived; both are reported as
// failures and --once exits 1. Run as an unprivileged user (root ignores
// file modes).
func TestH1ScanIsolation(t *testing.T) {
	e := h1Start(t)
	good := h1LogDir(t, "__consumer_offsets-12", "__consumer_offsets-49")
	broken := h1LogDir(t, "__consumer_offsets-10")
	state := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(state, 0o755)
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "segvault")
	h1CopyFile(t, segvaultBin(t), bin)
	os.Chmod(bin, 0o755)
	for _, d := range []string{good, broken, state, binDir} {
		for p := d; p != "/tmp" && p != "/" && p != "."; p = filepath.Dir(p) {
			os.Chmod(p, 0o755)
		}
	}
	os.Chown(state, 65534, 65534)
	os.Chmod(filepath.Join(good, "__consumer_offsets-49"), 0)
	os.Chmod(filepath.Join(broken, "meta.properties"), 0)
	t.Cleanup(func() {
		os.Chmod(filepath.Join(good, "__consumer_offsets-49"), 0o755)
		os.Chmod(filepath.Join(broken, "meta.properties"), 0o644)
	})
	args := []string{"agent", "--once", "--listen", "", "--settle-time", "0", "--scan-interval", "200ms", "--state-dir", state,
		"--log-dirs", broken, "--log-dirs", good}
	out, errOut, code := e.run(t, bin, &syscall.Credential{Uid: 65534, Gid: 65534}, append(args, e.store...)...)
	if code != 1 || !strings.Contains(out, "1 segments archived") || !strings.Contains(out, "2 failed") {
		t.Fatalf("agent --once as uid 65534: exit %d, want 1 with 1 archived and 2 failed\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{"__consumer_offsets-49", "meta.properties"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("failure of %s not reported:\n%s", w, errOut)
		}
	}
	if e.manifest(t, "__consumer_offsets-12", 0) == nil {
		t.Error("the readable partition was not archived")
	}
}
