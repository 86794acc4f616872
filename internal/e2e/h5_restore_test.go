package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// init turns the test binary into a lock holder when asked: it takes
// Kafka's POSIX lock on the file named by H5_HOLD_LOCK (as a running broker
// does on <logdir>/.lock), says "locked" and waits to be killed.
func init() {
	p := os.Getenv("H5_HOLD_LOCK")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		os.Exit(3)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		os.Exit(4)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(2 * time.Minute)
	os.Exit(0)
}

// h5HoldLock starts a child process holding dir/.lock until the test ends.
func h5HoldLock(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "H5_HOLD_LOCK="+filepath.Join(dir, ".lock"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf[:6]) != "locked" {
		t.Fatalf("lock holder did not lock: %q %v", buf, err)
	}
}

// h5Run runs the segvault binary and returns stdout, stderr and the exit code.
func h5Run(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(segvaultBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// h5Archive generates a broker log dir with brokersim and archives it with
// `segvault agent --once` into bucket (a file:// URL or s3:// with env).
func h5Archive(t *testing.T, cfg brokersim.Config, bucket string, env []string, extra ...string) *brokersim.Result {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "kafka-logs")
	}
	res, err := brokersim.Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h5ArchiveDir(t, cfg.Dir, bucket, env, extra...)
	return res
}

func h5ArchiveDir(t *testing.T, dir, bucket string, env []string, extra ...string) {
	t.Helper()
	args := append([]string{"--log-level", "warn", "agent", "--once", "--settle-time", "0s", "--listen", "", "--log-dirs", dir,
		"--bucket", bucket, "--state-dir", t.TempDir()}, extra...)
	if out, errOut, code := h5Run(t, env, args...); code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
}

func h5Config(node int32) brokersim.Config {
	return brokersim.Config{NodeID: node, SegmentBytes: 16 << 10, Seed: 7, ClusterID: "h5h5h5h5h5h5h5h5h5h5hA",
		Topics: []brokersim.TopicSpec{{Name: "orders", Partitions: 2, Codec: "none", Records: 1200}}}
}

// TestH5RestoreRefusesLockedTarget: while a process holds the target's
// .lock (a running broker), restore refuses whatever the flags, and the
// partition dir in the target is left alone.
func TestH5RestoreRefusesLockedTarget(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(1), bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	live := filepath.Join(target, "orders-0")
	os.MkdirAll(live, 0o755)
	active := filepath.Join(live, "00000000000000099999.log")
	os.WriteFile(active, []byte("active segment of a running broker"), 0o644)
	h5HoldLock(t, target)
	for _, extra := range [][]string{{"--force"}, {"--force", "--dry-run"}, {"--force", "--broker", "1", "--whole-broker", "--allow-no-metadata"}} {
		out, errOut, code := h5Run(t, nil, append([]string{"restore", "--bucket", bucket, "-t", target}, extra...)...)
		if code != 1 || !strings.Contains(errOut, ".lock") {
			t.Errorf("restore %v with the target locked: exit %d, want 1 naming .lock\n%s\n%s", extra, code, out, errOut)
		}
		if _, err := os.Stat(active); err != nil {
			t.Fatalf("restore %v replaced the partition dir of a running broker: %v", extra, err)
		}
	}
}

// TestH5RestoreOtherClusterAndDryRun: a target whose meta.properties names
// another cluster is refused unless --into-other-cluster; --dry-run lists
// the partition dirs that exist and what would happen to them.
func TestH5RestoreOtherClusterAndDryRun(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(1), bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(target, "orders-1"), 0o755)
	os.WriteFile(filepath.Join(target, "orders-1", "00000000000000000000.log"), []byte("x"), 0o644)
	other := index.FormatMetaProperties(&index.MetaProperties{Version: 1, NodeID: 1, ClusterID: "OTHERotherOTHERotherOA"}, "Thu Jan 01 00:00:00 UTC 2026")
	os.WriteFile(filepath.Join(target, index.MetaPropertiesFile), other, 0o644)

	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--dry-run")
	if code != 1 || !strings.Contains(errOut, "OTHERotherOTHERotherOA") || !strings.Contains(errOut, "--into-other-cluster") {
		t.Errorf("dry-run into another cluster's log dir: exit %d, want 1 naming the cluster and --into-other-cluster\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--into-other-cluster", "--dry-run")
	if code != 0 || !strings.Contains(out, filepath.Join(target, "orders-1")) || !strings.Contains(out, "refused") {
		t.Errorf("dry-run: exit %d, want 0 listing %s as refused\n%s\n%s", code, filepath.Join(target, "orders-1"), out, errOut)
	}
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--into-other-cluster", "--dry-run", "--force")
	if code != 0 || !strings.Contains(out, "replaced") {
		t.Errorf("dry-run --force: exit %d, want 0 listing the dir as replaced\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--force")
	if code != 1 {
		t.Errorf("restore into another cluster's log dir: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	if data, _ := os.ReadFile(filepath.Join(target, "orders-1", "00000000000000000000.log")); string(data) != "x" {
		t.Fatal("refused restore touched the target")
	}
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--force", "--into-other-cluster")
	if code != 0 {
		t.Fatalf("restore --into-other-cluster: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestH5BadManifestFallsBack: one unparseable manifest of broker 1 does not
// stop a whole-broker restore: it is reported by key, its segment comes from
// broker 2's copy, everything else is restored, and the exit code is 1.
// Against a real MinIO.
func TestH5BadManifestFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	env := []string{"SEGVAULT_S3_ACCESS_KEY=" + srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY=" + srv.SecretKey()}
	s3 := []string{"--bucket", "s3://" + name, "--s3-endpoint", srv.Endpoint(), "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1"}
	for _, node := range []int32{1, 2} {
		cfg := h5Config(node)
		cfg.Dir = filepath.Join(t.TempDir(), "kafka-logs")
		if _, err := brokersim.Generate(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		h5ArchiveDir(t, cfg.Dir, "s3://"+name, env, s3[2:]...)
	}
	b := s3Bucket2(t, srv, name)
	var bad string
	for _, m := range manifests(t, b) {
		if m.BrokerID == 1 && m.Topic == "orders" && m.Partition == 0 && m.BaseOffset > 0 && bad == "" {
			bad = archive.NewLayout("").ManifestKey(m.Ref())
		}
	}
	if bad == "" {
		t.Fatal("no manifest to damage")
	}
	ctx := context.Background()
	if err := b.Delete(ctx, bad); err != nil {
		t.Fatal(err)
	}
	junk := []byte("{not json")
	if err := b.Create(ctx, bad, bytes.NewReader(junk), int64(len(junk)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "data")
	out, errOut, code := h5Run(t, env, append([]string{"restore", "--broker", "1", "--whole-broker", "--allow-no-metadata", "-t", target}, s3...)...)
	if code != 1 || !strings.Contains(out+errOut, bad) {
		t.Fatalf("restore with one bad manifest: exit %d, want 1 naming %s\n%s\n%s", code, bad, out, errOut)
	}
	if h11OtherGaps(out) {
		t.Errorf("the segment was not taken from broker 2's copy:\n%s", out)
	}
	for _, p := range []string{"orders-0", "orders-1"} {
		logs, _ := filepath.Glob(filepath.Join(target, p, "*.log"))
		if len(logs) < 2 {
			t.Errorf("%s: %d segments restored", p, len(logs))
		}
	}
	if _, err := os.Stat(filepath.Join(target, index.MetaPropertiesFile)); err != nil {
		t.Errorf("root files not restored: %v", err)
	}
}

// TestH5WholeBrokerNeedsMetadata: a whole-broker rebuild without any
// archived __cluster_metadata is refused unless --allow-no-metadata, and
// bootstrap.checkpoint is archived and restored byte for byte.
func TestH5WholeBrokerNeedsMetadata(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	cfg := h5Config(3)
	cfg.Dir = filepath.Join(t.TempDir(), "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(fixturesRoot + "/ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/bootstrap.checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cfg.Dir, "bootstrap.checkpoint"), boot, 0o644)
	h5ArchiveDir(t, cfg.Dir, bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "--broker", "3", "--whole-broker", "-t", target)
	if code != 1 || !strings.Contains(errOut, "__cluster_metadata") || !strings.Contains(errOut, "--allow-no-metadata") {
		t.Errorf("whole-broker rebuild without metadata: exit %d, want 1 naming what is missing\n%s\n%s", code, out, errOut)
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Errorf("refused rebuild wrote %d entries into the target", len(ents))
	}
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "--broker", "3", "--whole-broker", "--allow-no-metadata", "-t", target)
	if code != 0 {
		t.Fatalf("--allow-no-metadata: exit %d\n%s\n%s", code, out, errOut)
	}
	got, err := os.ReadFile(filepath.Join(target, "bootstrap.checkpoint"))
	if err != nil || !bytes.Equal(got, boot) {
		t.Fatalf("bootstrap.checkpoint not restored byte-identical: %v (%d bytes, want %d)", err, len(got), len(boot))
	}
}

// TestH5QuietPartitionKeepsOffsets: a partition the broker held with no
// archived segment (quiet, never rolled) comes back at its last known log
// end, not empty at offset 0; so does one whose every segment was lost
// (gap marker only).
func TestH5QuietPartitionKeepsOffsets(t *testing.T) {
	bucketDir := filepath.Join(t.TempDir(), "bucket")
	bucket := "file://" + bucketDir
	cfg := h5Config(4)
	cfg.Topics = append(cfg.Topics, brokersim.TopicSpec{Name: "quiet", Codec: "none", Records: 25})
	res := h5Archive(t, cfg, bucket, nil)
	store, err := uploader.NewLocal(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	layout := archive.NewLayout("")
	g := archive.GapMarker{Format: archive.GapMarkerFormat, Version: archive.ManifestVersion, ClusterID: res.ClusterID, BrokerID: 4, Topic: "gone", Partition: 0,
		TopicID: "AAAAAAAAAAAAAAAAAAAAAg", BaseOffset: 500, NextBase: 700, Bytes: 1 << 20, Reason: "deleted by Kafka before it was archived", At: time.Now().UTC()}
	data, _ := json.Marshal(g)
	key := layout.GapKey(archive.SegmentRef{Cluster: res.ClusterID, Topic: "gone", Partition: 0, TopicID: g.TopicID, BaseOffset: 500, Broker: 4})
	if err := store.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "data")
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "--broker", "4", "--whole-broker", "--allow-no-metadata", "-t", target)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	for p, want := range map[string]int64{"quiet-0": 25, "gone-0": 700} {
		logs, _ := filepath.Glob(filepath.Join(target, p, "*.log"))
		if len(logs) != 1 || filepath.Base(logs[0]) != segment.FormatName(want, segment.KindLog) {
			t.Errorf("%s: restored segments %v, want one empty segment at offset %d", p, logs, want)
			continue
		}
		for _, k := range []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex} {
			if fi, err := os.Stat(filepath.Join(target, p, segment.FormatName(want, k))); err != nil || fi.Size() != 0 {
				t.Errorf("%s: %s not empty: %v", p, segment.FormatName(want, k), err)
			}
		}
	}
	hw, err := os.ReadFile(filepath.Join(target, index.ReplicationOffsetFile))
	if err != nil || !strings.Contains(string(hw), "quiet 0 25\n") {
		t.Errorf("replication-offset-checkpoint does not keep quiet-0 at 25: %v\n%s", err, hw)
	}
}

// TestH5PointInTimeArguments: negative cuts are usage errors, a time that
// looks like Unix seconds is refused with a hint, --dry-run shows the exact
// cut per partition, and a restore that writes nothing does not claim bytes.
func TestH5PointInTimeArguments(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(1), bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	for _, a := range [][]string{{"--to-offset", "-5"}, {"--to-time", "-5"}, {"--to-time", "1764776740"}} {
		out, errOut, code := h5Run(t, nil, append([]string{"restore", "--bucket", bucket, "-t", target}, a...)...)
		if code != 2 {
			t.Errorf("restore %v: exit %d, want 2\n%s\n%s", a, code, out, errOut)
		}
		if a[1] == "1764776740" && !strings.Contains(errOut, "multiply by 1000") {
			t.Errorf("restore %v: no seconds/milliseconds hint:\n%s", a, errOut)
		}
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Fatalf("a refused restore wrote into the target")
	}
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--to-offset", "300", "--dry-run")
	if code != 0 {
		t.Fatalf("dry-run --to-offset: exit %d\n%s\n%s", code, out, errOut)
	}
	dry := out
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--to-offset", "300")
	if code != 0 {
		t.Fatalf("restore --to-offset: exit %d\n%s\n%s", code, out, errOut)
	}
	// The dry-run's cut is the one the restore makes, with its timestamp.
	for _, p := range []string{"orders-0", "orders-1"} {
		var cut int64 = -2
		for _, l := range strings.Split(out, "\n") {
			fmt.Sscanf(strings.TrimSpace(l), p+": cut after offset %d", &cut)
		}
		if cut < 0 || cut > 300 {
			t.Fatalf("restore --to-offset 300 of %s cut after %d:\n%s", p, cut, out)
		}
		if want := fmt.Sprintf("%s: cut after last offset %d, last timestamp ", p, cut); !strings.Contains(dry, want) {
			t.Errorf("dry-run does not show the exact cut of %s (want %q):\n%s", p, want, dry)
		}
	}
	// A cut before every record: the partitions come back empty, and the
	// summary must not count the fetched-then-cut bytes as written.
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", filepath.Join(t.TempDir(), "early"), "--to-time", "2001-01-01T00:00:00Z")
	if code != 0 {
		t.Fatalf("restore --to-time 2001: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "no record data") || strings.Contains(out, "verified and written") {
		t.Errorf("a cut before every record claims bytes written:\n%s", out)
	}
}

// TestH5UnknownBroker: --broker N for a broker the archive does not hold is
// an error listing the brokers it holds.
func TestH5UnknownBroker(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(1), bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	for _, extra := range [][]string{nil, {"--whole-broker"}, {"--dry-run"}} {
		out, errOut, code := h5Run(t, nil, append([]string{"restore", "--bucket", bucket, "-t", target, "--broker", "42"}, extra...)...)
		if code != 2 || !strings.Contains(errOut, "42") || !strings.Contains(errOut, "holds brokers 1") {
			t.Errorf("restore --broker 42 %v: exit %d, want 2 listing broker 1\n%s\n%s", extra, code, out, errOut)
		}
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Fatal("restore --broker 42 wrote into the target")
	}
}

// TestH5RootFilesAtomic: root files rewritten in place (--force) go through
// temp+fsync+rename: a hard link to the old file keeps the old bytes, no
// temp file is left, and the mode is 0644.
func TestH5RootFilesAtomic(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	res := h5Archive(t, h5Config(5), bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(target, 0o755)
	old := []byte("# old\nversion=1\nnode.id=5\ncluster.id=" + res.ClusterID + "\n")
	side := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(side, old, 0o600)
	if err := os.Link(side, filepath.Join(target, index.MetaPropertiesFile)); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "--broker", "5", "--whole-broker", "--allow-no-metadata", "--force", "-t", target)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, _ := os.ReadFile(side); !bytes.Equal(got, old) {
		t.Errorf("meta.properties was written in place (through a hard link): not temp+rename")
	}
	for _, n := range append([]string{index.MetaPropertiesFile}, index.ReplicationOffsetFile, index.LogStartOffsetFile) {
		fi, err := os.Stat(filepath.Join(target, n))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v mode %v", n, err, fi)
		}
	}
	ents, _ := os.ReadDir(target)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	mp, err := os.ReadFile(filepath.Join(target, index.MetaPropertiesFile))
	if err != nil || !strings.Contains(string(mp), "node.id=5") || bytes.Equal(mp, old) {
		t.Errorf("meta.properties not restored: %v\n%s", err, mp)
	}
}

// TestH5RestoreJSON: restore --json is snake_case with durations in seconds
// and RFC 3339 times, like ls --json.
func TestH5RestoreJSON(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(1), bucket, nil)
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "-t", filepath.Join(t.TempDir(), "data"), "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for k := range m {
		if k != strings.ToLower(k) {
			t.Errorf("key %q is not snake_case", k)
		}
	}
	d, ok := m["duration_seconds"].(float64)
	if !ok || d <= 0 || d > 600 {
		t.Errorf("duration_seconds = %v, want seconds as a number", m["duration_seconds"])
	}
	for _, k := range []string{"started_at", "finished_at"} {
		s, _ := m[k].(string)
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			t.Errorf("%s = %q: %v", k, s, err)
		}
	}
	if m["partitions"] != float64(2) {
		t.Errorf("partitions = %v", m["partitions"])
	}
	out, _, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", filepath.Join(t.TempDir(), "data"), "--json", "--dry-run")
	if code != 0 || strings.Contains(out, "\"Topic\"") || !strings.Contains(out, "\"topic\"") {
		t.Errorf("dry-run --json is not snake_case:\n%s", out)
	}
}

// TestH5GapMarkerThenData: a gap marker for a segment that was archived
// after all (a false "lost") does not make restore report a gap; a marker
// for a segment the archive lacks does.
func TestH5GapMarkerThenData(t *testing.T) {
	bucketDir := filepath.Join(t.TempDir(), "bucket")
	bucket := "file://" + bucketDir
	res := h5Archive(t, h5Config(1), bucket, nil)
	store, err := uploader.NewLocal(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	layout := archive.NewLayout("")
	var first, last *archive.SegmentManifest
	for _, m := range manifests(t, store) {
		if m.Topic == "orders" && m.Partition == 0 {
			if first == nil || m.BaseOffset < first.BaseOffset {
				first = m
			}
			if last == nil || m.BaseOffset > last.BaseOffset {
				last = m
			}
		}
	}
	put := func(base, next int64) {
		g := archive.GapMarker{Format: archive.GapMarkerFormat, Version: archive.ManifestVersion, ClusterID: res.ClusterID, BrokerID: 1, Topic: "orders",
			Partition: 0, TopicID: first.TopicID, BaseOffset: base, NextBase: next, Reason: "open: permission denied", At: time.Now().UTC()}
		data, _ := json.Marshal(g)
		key := layout.GapKey(archive.SegmentRef{Cluster: res.ClusterID, Topic: "orders", Partition: 0, TopicID: first.TopicID, BaseOffset: base, Broker: 1})
		if err := store.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put(first.BaseOffset, first.NextSegmentBase) // false: the segment is archived
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "-t", filepath.Join(t.TempDir(), "a"))
	if code != 0 || h11OtherGaps(out) {
		t.Fatalf("a false gap marker hid archived data: exit %d\n%s\n%s", code, out, errOut)
	}
	put(last.NextSegmentBase, last.NextSegmentBase+50) // a real loss after the last archived segment
	out, errOut, code = h5Run(t, nil, "restore", "--bucket", bucket, "-t", filepath.Join(t.TempDir(), "b"))
	want := fmt.Sprintf("offsets %d..%d", last.NextSegmentBase, last.NextSegmentBase+49)
	if !strings.Contains(out, want) {
		t.Fatalf("a lost segment is not reported (want %q): exit %d\n%s\n%s", want, code, out, errOut)
	}
}
