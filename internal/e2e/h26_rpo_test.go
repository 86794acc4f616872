package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// h26Agent runs the agent binary (its defaults, but a short tail interval
// and settle time) against a MinIO bucket; kill sends SIGKILL.
type h26Agent struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

// The test's tail interval and settle time; SEGVAULT_H26_DEFAULTS=1 runs the
// agent with its defaults instead (60s, 5s: the "Done when", about
// three minutes; set SEGVAULT_H26_RUN=150s with it).
var h26TailInterval, h26Settle, h26Flags = func() (time.Duration, time.Duration, []string) {
	if os.Getenv("SEGVAULT_H26_DEFAULTS") == "1" {
		return agent.DefaultTailInterval, agent.Defaults().SettleTime, nil
	}
	return 5 * time.Second, time.Second, []string{"--tail-interval", "5s", "--settle-time", "1s"}
}()

// h26Bound is the recovery point the test holds the agent to: a record acked
// this long before the kill is restored. It is the tail interval plus the
// settle time (a segment that rolls between two capture rounds is
// protected once it is archived, settle-time after its last write) plus the
// agent's own work: a round's read, upload and commit, or the rolled
// segment's. That work is well under a second on a quiet machine; on a
// loaded 2-core one (a fresh-root make test) a busy partition's 64 KiB
// segment lived and rolled between two capture rounds and was not archived
// yet at the kill, so records acked 6 s before it were only on disk.
var h26Bound = h26TailInterval + h26Settle + 5*time.Second

func h26StoreArgs(srv *miniotest.Server, bucket string) []string {
	return []string{"--bucket", "s3://" + bucket, "--s3-endpoint", srv.Endpoint(), "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1"}
}

func h26Env(srv *miniotest.Server) []string {
	return append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
}

func h26StartAgent(t *testing.T, srv *miniotest.Server, bucket, logDir string) *h26Agent {
	t.Helper()
	args := append([]string{"--log-format", "json", "agent", "--log-dirs", logDir, "--state-dir", t.TempDir(), "--listen", ""}, h26Flags...)
	args = append(args, h26StoreArgs(srv, bucket)...)
	a := &h26Agent{cmd: exec.Command(segvaultBin(t), args...), stderr: &bytes.Buffer{}}
	a.cmd.Env = h26Env(srv)
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.kill)
	return a
}

func (a *h26Agent) kill() {
	if a.cmd.ProcessState == nil {
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
	}
}

// h26Segvault runs the segvault binary to completion.
func h26Segvault(t *testing.T, srv *miniotest.Server, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(segvaultBin(t), args...)
	cmd.Env = h26Env(srv)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// h26Acked is a produced record and when its produce was acknowledged.
type h26Acked struct {
	rec *kgo.Record
	at  time.Time
}

// TestH26BoundedRPO: a real Kafka broker with a quiet topic (a few records a
// second, default segment settings: it never rolls) and a busy one (small
// segments: it rolls all the time), the agent binary with its defaults but
// a 5 s tail interval and 1 s settle time; broker and agent are killed with
// SIGKILL. A whole-broker restore into a fresh dir boots (its metadata log
// never rolled: it comes from the captures) and serves every record acked at
// least tail-interval + settle before the kill, at its original offset, and
// the consumer-group offsets committed before that.
func TestH26BoundedRPO(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka")
	}
	ctx := context.Background()
	version := kafkatest.DefaultVersion
	props := kafkatest.DefaultProps(version)
	src := kafkatest.Start(t, kafkatest.Options{Version: version, Props: props})
	src.CreateTopic(t, "quiet", 1, nil)
	src.CreateTopic(t, "busy", 2, map[string]string{kafkatest.TopicSegmentBytesKey(version, 64<<10): strconv.Itoa(64 << 10)})

	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	agentProc := h26StartAgent(t, srv, bucket, src.LogDir())

	var mu sync.Mutex
	var acked []h26Acked
	cl := src.Client(t, kgo.ProducerLinger(2*time.Millisecond))
	produce := func(topic string, n, base int) {
		var rs []*kgo.Record
		for i := 0; i < n; i++ {
			rs = append(rs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(base+i)),
				Value: []byte(fmt.Sprintf(`{"seq":%d,"topic":%q,"pad":"%s"}`, base+i, topic, strings.Repeat("x", 150)))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Errorf("produce %s: %v", topic, err)
			return
		}
		now := time.Now()
		mu.Lock()
		for _, r := range rs {
			acked = append(acked, h26Acked{r, now})
		}
		mu.Unlock()
	}
	group := src.Client(t, kgo.ConsumerGroup("h26-group"), kgo.ConsumeTopics("quiet"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var committed kadm.OffsetResponses
	var committedAt time.Time
	runFor := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SEGVAULT_H26_RUN")); err == nil {
		runFor = d
	}
	start := time.Now()
	quietN, busyN := 0, 0
	for round := 0; time.Since(start) < runFor; round++ {
		produce("quiet", 1, quietN) // ~3 records/s
		quietN++
		for i := 0; i < 3; i++ {
			produce("busy", 60, busyN) // ~70 KB/s over two partitions
			busyN += 60
		}
		if committedAt.IsZero() && time.Since(start) > runFor/3 {
			if fs := group.PollRecords(ctx, 100); fs.NumRecords() == 0 {
				t.Fatal("group consumer got nothing")
			}
			if err := group.CommitUncommittedOffsets(ctx); err != nil {
				t.Fatal(err)
			}
			var err error
			if committed, err = kadm.NewClient(group).FetchOffsets(ctx, "h26-group"); err != nil {
				t.Fatal(err)
			}
			committedAt = time.Now()
		}
		time.Sleep(300 * time.Millisecond)
	}
	group.Close() // leaves the group; its committed offsets stay
	produce("quiet", 1, quietN)
	quietN++
	// SIGKILL, both at once: the broker and the agent.
	killAt := time.Now()
	src.Kill()
	agentProc.kill()
	if strings.Contains(agentProc.stderr.String(), "panic") {
		t.Fatalf("agent panicked:\n%s", agentProc.stderr.String())
	}
	bound := killAt.Add(-h26Bound)
	if committedAt.After(bound) {
		t.Fatalf("the group committed at %v, after the bound %v: the test ran too short", committedAt, bound)
	}

	// What the broker held on disk (rolled segments never restored from
	// captures): the agent archived it all, rolled or captured.
	b := s3Bucket2(t, srv, bucket)
	tails := h26TailManifests(t, b)
	if len(tails) == 0 {
		t.Fatal("the agent made no tail capture")
	}
	dst := filepath.Join(t.TempDir(), "restored")
	out, code := h26Segvault(t, srv, append([]string{"ls"}, h26StoreArgs(srv, bucket)...)...)
	t.Logf("segvault ls:\n%s", out)
	if code != 0 {
		t.Fatalf("ls: exit %d", code)
	}
	out, code = h26Segvault(t, srv, append([]string{"ls", "--json", "--topic", "^quiet$"}, h26StoreArgs(srv, bucket)...)...)
	if code != 0 || !strings.Contains(out, `"restorable_from": "tail-capture"`) || !strings.Contains(out, `"restorable_offset"`) {
		t.Errorf("ls --json: exit %d, want quiet-0 restorable from its tail captures\n%s", code, out)
	}
	out, code = h26Segvault(t, srv, append([]string{"restore", "--broker", strconv.Itoa(int(src.NodeID)), "--whole-broker", "-t", dst}, h26StoreArgs(srv, bucket)...)...)
	if code != 0 {
		t.Fatalf("restore --whole-broker: exit %d\n%s", code, out)
	}
	t.Logf("restore:\n%s", out)
	if _, err := os.Stat(filepath.Join(dst, "__cluster_metadata-0", segment.FormatName(0, segment.KindLog))); err != nil {
		t.Fatalf("no restored metadata log: %v", err)
	}
	br := kafkatest.Start(t, kafkatest.Options{Version: version, LogDir: dst, SkipFormat: true, Props: props})
	if br.ClusterID != src.ClusterID {
		t.Fatalf("restored cluster id %s, want %s", br.ClusterID, src.ClusterID)
	}
	got := consumeAll(t, br, "quiet", "busy")
	// Every record acked before the bound is there at its offset; every
	// record there was produced, at its offset (a prefix of the log).
	byPart := map[string]map[int64]h26Acked{}
	need := map[string]int64{} // highest offset acked before the bound
	for _, a := range acked {
		k := fmt.Sprintf("%s/%d", a.rec.Topic, a.rec.Partition)
		if byPart[k] == nil {
			byPart[k] = map[int64]h26Acked{}
			need[k] = -1
		}
		byPart[k][a.rec.Offset] = a
		if a.at.Before(bound) && a.rec.Offset > need[k] {
			need[k] = a.rec.Offset
		}
	}
	total, late := 0, 0
	for k, want := range byPart {
		recs := got[k]
		sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
		have := map[int64]bool{}
		for _, r := range recs {
			w, ok := want[r.Offset]
			if !ok {
				t.Errorf("%s: restored offset %d was never produced", k, r.Offset)
				continue
			}
			if err := sameRecord(r, w.rec); err != nil {
				t.Errorf("%s: %v", k, err)
			}
			have[r.Offset] = true
			if !w.at.Before(bound) {
				late++
			}
		}
		missing := 0
		for off, w := range want {
			if w.at.Before(bound) && !have[off] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d records acked at least %v before the kill are missing (restored %d, need up to offset %d)", k, missing, h26Bound, len(recs), need[k])
		}
		total += len(recs)
	}
	t.Logf("restored %d records (%d of them acked within %v of the kill); produced quiet %d, busy %d", total, late, h26Bound, quietN, busyN)
	offs, err := br.Admin(t).FetchOffsets(ctx, "h26-group")
	if err != nil {
		t.Fatal(err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		r, ok := offs.Lookup(o.Topic, o.Partition)
		if !ok || r.At != o.At {
			t.Errorf("group offset %s/%d: restored %v (found %v), committed %d", o.Topic, o.Partition, r.At, ok, o.At)
		}
	})
	// The quiet partition never rolled: all of it came from captures.
	if segs, _ := kafkatest.SegmentFiles(filepath.Join(dst, "quiet-0")); len(segs) != 1 {
		t.Logf("quiet-0 restored as %d segments: %v", len(segs), segs)
	}
}

// h26TailManifests reads every committed tail manifest of the bucket.
func h26TailManifests(t *testing.T, b uploader.Bucket) []*archive.TailManifest {
	t.Helper()
	ctx := context.Background()
	var out []*archive.TailManifest
	err := b.List(ctx, archive.NewLayout("").RootV2(), func(oi uploader.ObjectInfo) error {
		if !strings.Contains(oi.Key, "/tails/") || !strings.HasSuffix(oi.Key, ".json") {
			return nil
		}
		data, err := uploader.ReadAll(ctx, b, oi.Key, archive.MaxTailManifestSize)
		if err != nil {
			return err
		}
		m, err := archive.DecodeTailManifest(oi.Key, data)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func h26Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestH26TruncatedActiveSegment: the agent binary captures a copy of a real
// broker's log dir while its active segment grows; then the segment is
// truncated and rewritten (the same offsets with another leader epoch, as
// after an unclean election) and captured again. The restore holds the new
// content, byte for byte, never a mix with the old captures.
func TestH26TruncatedActiveSegment(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	logs := copyTree(t, "../../../shared/fixtures/kafka-real/BiggerBrain__kafka/data")
	logPath := filepath.Join(logs, "lsx1-0", segment.FormatName(0, segment.KindLog))
	orig, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var bounds []int64
	r := segment.NewReader(bytes.NewReader(orig), int64(len(orig)), logPath, segment.ReaderOptions{BaseOffset: 0})
	for r.Next() {
		bounds = append(bounds, r.Batch().Pos)
	}
	if r.Err() != nil || len(bounds) != 14 {
		t.Fatalf("fixture: %d batches, %v", len(bounds), r.Err())
	}
	rewritten := append([]byte(nil), orig...)
	for _, pos := range bounds[6:] {
		copy(rewritten[pos+12:pos+16], []byte{0, 0, 0, 9}) // partition leader epoch 9 (outside the batch CRC)
	}
	// The broker's segment holds batches 0..9 (old content) first.
	if err := os.WriteFile(logPath, orig[:bounds[10]], 0o644); err != nil {
		t.Fatal(err)
	}
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	b := s3Bucket2(t, srv, bucket)
	a := h26StartAgent(t, srv, bucket, logs)
	waitCapture := func(sum string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			for _, m := range h26TailManifests(t, b) {
				for _, c := range m.Captures {
					if c.Topic == "lsx1" && c.SHA256 == sum {
						return
					}
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("no capture of the segment's current content within 90s\n%s", a.stderr.String())
	}
	waitCapture(h26Sum(orig[:bounds[10]]))
	// Truncated to batch 6 and rewritten to the end, in place.
	f, err := os.OpenFile(logPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(bounds[6]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(rewritten[bounds[6]:], bounds[6]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitCapture(h26Sum(rewritten))
	a.kill()

	dst := filepath.Join(t.TempDir(), "restored")
	out, code := h26Segvault(t, srv, append([]string{"restore", "-t", dst}, h26StoreArgs(srv, bucket)...)...)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, out)
	}
	got, err := os.ReadFile(filepath.Join(dst, "lsx1-0", segment.FormatName(0, segment.KindLog)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, rewritten) {
		t.Errorf("restored %d bytes: not the rewritten content (%d bytes; a mix with the old captures?)", len(got), len(rewritten))
	}
}
