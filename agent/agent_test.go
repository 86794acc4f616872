package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// TestMain lets the test binary act as a "broker" holding a POSIX lock on a
// log dir's .lock file, like Kafka does.
func TestMain(m *testing.M) {
	if p := os.Getenv("SEGVAULT_TEST_HOLD_LOCK"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			os.Exit(3)
		}
		lk := syscall.Flock_t{Type: syscall.F_WRLCK}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
			os.Exit(4)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestConfigValidateNamesOption(t *testing.T) {
	c := Defaults()
	c.Concurrency, c.Compression = 0, "lzma"
	c.IncludeTopics = []string{"("}
	err := c.Validate()
	for _, opt := range []string{"log-dirs", "bucket", "state-dir", "concurrency", "compression", "include-topics"} {
		if err == nil || !strings.Contains(err.Error(), opt) {
			t.Errorf("error does not name %s: %v", opt, err)
		}
	}
}

func TestStateJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	s, fresh, err := OpenState(dir)
	if err != nil || !fresh {
		t.Fatal(err, fresh)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Put(stateEntry{Key: k, Status: statusArchived}); err != nil {
			t.Fatal(err)
		}
	}
	// Crash: no compaction, and a torn half line at the end of the journal.
	s.journal.WriteString(`1234abcd {"key":"d","sta`)
	s.journal.Close()
	s2, fresh, err := OpenState(dir)
	if err != nil || fresh {
		t.Fatal(err, fresh)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := s2.Get(k); !ok {
			t.Errorf("entry %s lost", k)
		}
	}
	if _, ok := s2.Get("d"); ok {
		t.Error("torn entry accepted")
	}
	// A corrupted (bad checksum) line stops replay there, never panics.
	s2.Put(stateEntry{Key: "e", Status: statusCorrupt})
	s2.Close()
	s3, _, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := s3.Get("e"); !ok || e.Status != statusCorrupt {
		t.Fatalf("e = %+v %v", e, ok)
	}
}

func TestReadServerProperties(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.properties")
	os.WriteFile(p, []byte("# kafka\nprocess.roles=broker,controller\nnode.id=7\nlog.dirs=/data/a, /data/b\n"), 0o644)
	dirs, id, err := ReadServerProperties(p)
	if err != nil || id != 7 || len(dirs) != 2 || dirs[1] != "/data/b" {
		t.Fatalf("%v %d %v", dirs, id, err)
	}
}

// TestDiscovery: the active segment is never a candidate; a rolled segment
// with untrimmed indexes waits; a compaction swap holds back the segments
// it covers; renamed dirs are skipped.
func TestDiscovery(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 800}}})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Partition("t", 0)
	if len(p.Segments) < 3 {
		t.Fatal("want 3+ segments")
	}
	scans, err := scanLogDir(dir, topicFilter{}, false)
	if err != nil || len(scans) != 1 {
		t.Fatal(scans, err)
	}
	got := scans[0].Candidates
	if len(got) != len(p.Segments)-1 {
		t.Fatalf("%d candidates for %d segments", len(got), len(p.Segments))
	}
	active := p.Segments[len(p.Segments)-1]
	for _, c := range got {
		if c.Base == active {
			t.Fatal("active segment is a candidate")
		}
	}
	// An untrimmed (zero-padded) index: the roll has not finished; the
	// segment waits (SettleWait), without that index.
	idx := filepath.Join(p.Dir, segment.FormatName(p.Segments[0], segment.KindIndex))
	os.Truncate(idx, 10<<20)
	scans, _ = scanLogDir(dir, topicFilter{}, false)
	if c := scans[0].Candidates[0]; len(scans[0].Candidates) != len(p.Segments)-1 || c.SettleWait == "" {
		t.Fatalf("zero-padded index: %d candidates, first waits for %q", len(scans[0].Candidates), c.SettleWait)
	}
	// A compaction swap in progress holds back only the segment it covers.
	os.WriteFile(filepath.Join(p.Dir, segment.FormatName(p.Segments[0], segment.KindLog)+".swap"), nil, 0o644)
	scans, _ = scanLogDir(dir, topicFilter{}, false)
	if scans[0].Unstable == "" || len(scans[0].Candidates) != len(p.Segments)-2 || scans[0].Candidates[0].Base == p.Segments[0] {
		t.Fatalf("swap in progress not noticed: %+v", scans[0])
	}
	// Renamed dirs are not partitions to archive; filters apply.
	os.Mkdir(filepath.Join(dir, "t-1.0123456789abcdef0123456789abcdef-delete"), 0o755)
	scans, _ = scanLogDir(dir, topicFilter{}, false)
	if len(scans) != 1 {
		t.Fatalf("renamed dir scanned: %d", len(scans))
	}
	c := Defaults()
	c.ExcludeTopics = []string{"t"}
	if scans, _ = scanLogDir(dir, newTopicFilter(&c), false); len(scans) != 0 {
		t.Fatal("exclude filter ignored")
	}
}

// TestBrokerLockRefusesActive: --include-active refuses while a process
// holds Kafka's POSIX lock on the log dir.
func TestBrokerLockRefusesActive(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, ".lock")
	if held, err := brokerHoldsLock(dir); err != nil || held {
		t.Fatalf("no lock file: held=%v err=%v", held, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SEGVAULT_TEST_HOLD_LOCK="+lock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf[:6]) != "locked" {
		t.Fatalf("helper did not lock: %q %v", buf, err)
	}
	if held, err := brokerHoldsLock(dir); err != nil || !held {
		t.Fatalf("lock held by another process not seen: held=%v err=%v", held, err)
	}
}

// TestStagingOrphans: a staged segment whose original Kafka deleted is
// still found (and opened) from staging.
func TestStagingOrphans(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 600}}})
	if err != nil {
		t.Fatal(err)
	}
	scans, _ := scanLogDir(dir, topicFilter{}, false)
	c := scans[0].Candidates[0]
	st, err := newStaging(filepath.Join(filepath.Dir(dir), "state"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if ok, why, err := st.stage(&c); !ok || err != nil {
		t.Fatal(why, err)
	}
	if st.Used() == 0 {
		t.Fatal("staged bytes not counted")
	}
	p := res.Partition("t", 0)
	for _, f := range c.Files {
		os.Remove(filepath.Join(p.Dir, f.Name)) // retention
	}
	orph := st.orphans()
	if len(orph) != 1 || orph[0].Base != c.Base {
		t.Fatalf("orphans: %+v", orph)
	}
	a := &Agent{cfg: Config{}, staging: st}
	files, err := a.openCandidate(&orph[0])
	if err != nil || len(files) != len(c.Files) {
		t.Fatalf("open from staging: %v (%d files)", err, len(files))
	}
	closeAll(files)
	st.unstage(&c)
	if st.Used() != 0 || len(st.orphans()) != 0 {
		t.Fatalf("unstage left %d bytes", st.Used())
	}
	// A budget too small protects nothing, and says why.
	small, _ := newStaging(t.TempDir(), 1)
	if ok, why, _ := small.stage(&scans[0].Candidates[1]); ok || !strings.Contains(why, "budget") {
		t.Fatalf("over budget: ok=%v why=%q", ok, why)
	}
}

// TestDropOnlyOwnPages: pages resident before the agent read a file stay
// resident; pages it brought in are dropped.
func TestDropOnlyOwnPages(t *testing.T) {
	p := filepath.Join(t.TempDir(), "seg.log")
	data := make([]byte, 64*pageSize)
	for i := range data {
		data[i] = byte(i)
	}
	os.WriteFile(p, data, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	// Cold: evict everything, warm the first half ("the broker's hot pages").
	f.Sync()
	evict(f, int64(len(data)))
	f.ReadAt(make([]byte, 32*pageSize), 0)
	before := residentPages(f, int64(len(data)))
	if before.vec == nil {
		t.Skip("mincore unsupported on this filesystem")
	}
	hot := count(before)
	if hot < 32 {
		t.Skipf("page cache did not keep the warmed pages (%d/32): cannot measure here", hot)
	}
	f.ReadAt(make([]byte, len(data)), 0) // the agent reads the whole file
	dropped := dropNewPages(f, before)
	after := residentPages(f, int64(len(data)))
	for i := 0; i < 32; i++ {
		if before.vec[i]&1 == 1 && after.vec[i]&1 == 0 {
			t.Fatalf("hot page %d evicted", i)
		}
	}
	if dropped != int64(64-hot) {
		t.Fatalf("dropped %d pages, want %d", dropped, 64-hot)
	}
}

func count(r residency) int {
	n := 0
	for _, v := range r.vec {
		n += int(v & 1)
	}
	return n
}

func evict(f *os.File, size int64) {
	all := residency{size: size, vec: make([]byte, (size+pageSize-1)/pageSize)}
	dropNewPages(f, all)
}

// TestOffsetBeyondNextSegment: a damaged baseOffset (outside the CRC) that
// pushes a rolled segment's offsets past the next segment's base is caught
// before upload.
func TestOffsetBeyondNextSegment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 800}}})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Partition("t", 0)
	path := filepath.Join(p.Dir, segment.FormatName(p.Segments[0], segment.KindLog))
	data, _ := os.ReadFile(path)
	// Find the last batch and raise its base offset past the next segment's base.
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), path, segment.ReaderOptions{BaseOffset: p.Segments[0]})
	var last int64
	for r.Next() {
		last = r.Batch().Pos
	}
	binary.BigEndian.PutUint64(data[last:], uint64(p.Segments[1]+5))
	os.WriteFile(path, data, 0o644)
	if _, err := segment.Scan(bytes.NewReader(data), int64(len(data)), path, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: p.Segments[0]}}); err != nil {
		t.Fatalf("the .log alone should look valid (baseOffset is outside the CRC): %v", err)
	}
	b, _ := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority = []string{dir}, "file://x", t.TempDir(), 0, false
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.RunOnce(context.Background())
	if err != nil || rep.Corrupt != 1 {
		t.Fatalf("want the damaged segment reported corrupt: %+v %v", rep, err)
	}
}
