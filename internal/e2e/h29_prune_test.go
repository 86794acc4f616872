package e2e

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// h29Manifests maps every committed (v1) manifest key to its manifest.
func h29Manifests(t *testing.T, b uploader.Bucket) map[string]*archive.SegmentManifest {
	t.Helper()
	ctx := context.Background()
	out := map[string]*archive.SegmentManifest{}
	err := b.List(ctx, "", func(oi uploader.ObjectInfo) error {
		if k, ok := archive.ParseKey(archive.NewLayout(""), oi.Key); !ok || !k.IsManifest() {
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
		if m.CreatedAt.IsZero() {
			// v2 manifests carry no wall-clock time: a version reached the
			// bucket when its manifest did (what prune judges the window by).
			m.CreatedAt = oi.ModTime
		}
		out[oi.Key] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// h29Restore restores the kv topic (cut at toTime ms unless -1) into a new
// dir and returns it.
func h29Restore(ctx context.Context, b uploader.Bucket, dir string, toTime int64) error {
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1, Topics: mustRe("^kv$")}, 4)
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	_, err = restore.Run(ctx, src, plan, restore.Options{Targets: []string{dir}, Concurrency: 4, ToOffset: -1, ToTime: toTime, NodeID: -1})
	return err
}

// h29SameLogs checks that two restored trees hold the same .log files,
// byte for byte, and returns how many it compared.
func h29SameLogs(t *testing.T, a, b string) int {
	t.Helper()
	read := func(root string) map[string][]byte {
		out := map[string][]byte{}
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel(root, p)
				out[rel] = data
			}
			return nil
		})
		return out
	}
	x, y := read(a), read(b)
	if len(x) != len(y) {
		t.Errorf("%s holds %d .log files, %s %d", a, len(x), b, len(y))
	}
	n := 0
	for k, v := range x {
		if !bytes.Equal(v, y[k]) {
			t.Errorf("%s differs between %s and %s", k, a, b)
		}
		n++
	}
	return n
}

type h29PruneJSON struct {
	WindowStart time.Time `json:"window_start"`
	Units       []struct {
		Kind string   `json:"kind"`
		Keys []string `json:"keys"`
	} `json:"units"`
	Deleted    []string `json:"deleted"`
	BytesFreed int64    `json:"bytes_freed"`
	Failures   []string `json:"failures"`
	Duration   float64  `json:"duration_seconds"`
}

// TestH29PruneRealKafka: a compacted topic on a real broker whose cleaner
// rewrites segments, archived by the agent binary into MinIO. A prune (the
// binary) with a window that starts in the middle of the run deletes the
// versions superseded before it, and nothing archived within it; a full
// restore and a point-in-time restore to a moment inside the window are
// byte for byte what they were before; the prune ran while the agent
// archived another topic and restores ran in a loop, and none failed; a
// second prune deletes nothing.
func TestH29PruneRealKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka")
	}
	ctx := context.Background()
	bin := segvaultBin(t)
	props := kafkatest.DefaultProps(kafkatest.DefaultVersion)
	props["log.roll.ms"] = "2000"
	props["log.cleaner.backoff.ms"] = "300"
	props["log.cleaner.min.compaction.lag.ms"] = "0"
	br := kafkatest.Start(t, kafkatest.Options{SegmentBytes: 8 << 10, Props: props})
	br.CreateTopic(t, "kv", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01", "segment.ms": "2000"})
	br.CreateTopic(t, "busy", 1, nil)

	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	b := s3Bucket2(t, srv, name)
	store := []string{"--bucket", "s3://" + name, "--s3-endpoint", srv.Endpoint(), "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1"}
	env := append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
	agentCmd := exec.Command(bin, append(append([]string{"agent", "--log-dirs", br.LogDir()}, store...),
		"--state-dir", t.TempDir(), "--settle-time", "0", "--scan-interval", "200ms", "--listen", "")...)
	agentCmd.Env = env
	agentLog := &h29Buf{}
	agentCmd.Stderr = agentLog
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agentCmd.Process.Kill()
		agentCmd.Wait()
		if t.Failed() {
			t.Logf("agent log (tail): %s", h29Tail(agentLog.String(), 4000))
		}
	})

	cl := br.Client(t, kgo.ProducerLinger(2*time.Millisecond))
	seq := 0
	produce := func(topic string, n, keys int) {
		var rs []*kgo.Record
		for i := 0; i < n; i++ {
			seq++
			rs = append(rs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(seq%keys)), Value: []byte(fmt.Sprintf("value %d %s", seq, strings.Repeat("x", 100)))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", topic, err)
		}
	}
	rounds := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			produce("kv", 40, 30)
			time.Sleep(200 * time.Millisecond)
		}
	}
	rounds(10 * time.Second)
	time.Sleep(2500 * time.Millisecond)
	produce("kv", 1, 30) // rolls the segment of phase 1
	time.Sleep(4 * time.Second)
	mid := time.Now()
	time.Sleep(time.Second)
	rounds(3 * time.Second)
	pit := time.Now().UnixMilli()
	time.Sleep(10 * time.Millisecond)
	rounds(3 * time.Second)
	time.Sleep(2500 * time.Millisecond)
	produce("kv", 1, 30)
	// Wait until the archive of kv stops changing (the cleaner converged,
	// the agent archived its last rewrite).
	var before map[string]*archive.SegmentManifest
	stable := 0
	for deadline := time.Now().Add(90 * time.Second); stable < 4; {
		if time.Now().After(deadline) {
			t.Fatal("the archive of kv did not settle")
		}
		time.Sleep(time.Second)
		m := h29Manifests(t, b)
		if len(m) == len(before) {
			stable++
		} else {
			stable = 0
		}
		before = m
	}
	byBase := map[int64]int{}
	for _, m := range before {
		if m.Topic == "kv" {
			byBase[m.BaseOffset]++
		}
	}
	rewritten := 0
	for _, n := range byBase {
		if n > 1 {
			rewritten++
		}
	}
	if rewritten == 0 {
		t.Fatalf("the cleaner rewrote no archived segment of kv: %v", byBase)
	}
	tmp := t.TempDir()
	fullBefore, pitBefore := filepath.Join(tmp, "full-before"), filepath.Join(tmp, "pit-before")
	if err := h29Restore(ctx, b, fullBefore, -1); err != nil {
		t.Fatal(err)
	}
	if err := h29Restore(ctx, b, pitBefore, pit); err != nil {
		t.Fatal(err)
	}

	// Prune while the agent archives (busy) and restores run.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bgErr []error
	var mu sync.Mutex
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rs := []*kgo.Record{{Topic: "busy", Value: bytes.Repeat([]byte("b"), 500)}}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				mu.Lock()
				bgErr = append(bgErr, err)
				mu.Unlock()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	restores := 0
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := h29Restore(ctx, b, filepath.Join(tmp, fmt.Sprintf("during-%d", i)), pit); err != nil {
				mu.Lock()
				bgErr = append(bgErr, fmt.Errorf("restore during prune: %w", err))
				mu.Unlock()
				return
			}
			restores++
		}
	}()
	time.Sleep(500 * time.Millisecond)
	keep := time.Since(mid).Milliseconds()
	runPrune := func(keep int64) h29PruneJSON {
		cmd := exec.Command(bin, append([]string{"prune", "--keep-within", fmt.Sprintf("%dms", keep), "--delete-delay", "0", "--json"}, store...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("prune: %v\n%s\n%s", err, stderr.String(), stdout.String())
		}
		var rep h29PruneJSON
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("prune --json: %v\n%s", err, stdout.String())
		}
		return rep
	}
	rep := runPrune(keep)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, err := range bgErr {
		t.Error(err)
	}
	if restores == 0 {
		t.Error("no restore ran during the prune")
	}
	if err := agentCmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the agent is gone after the prune: %v", err)
	}
	if l := agentLog.String(); strings.Contains(l, "level=ERROR") {
		t.Errorf("the agent logged errors during the prune:\n%s", h29Tail(l, 4000))
	}
	t.Logf("prune: %d deletions, %d objects, %d bytes freed in %s (%d restores ran alongside)", len(rep.Units), len(rep.Deleted), rep.BytesFreed, time.Duration(rep.Duration*float64(time.Second)), restores)
	if len(rep.Units) == 0 || rep.BytesFreed == 0 {
		t.Fatalf("prune deleted nothing: %+v", rep)
	}
	after := h29Manifests(t, b)
	for k, m := range before {
		if _, ok := after[k]; ok {
			continue
		}
		if !m.CreatedAt.Before(rep.WindowStart) {
			t.Errorf("%s archived %s, within the window (from %s), was deleted", k, m.CreatedAt, rep.WindowStart)
		}
		// superseded: a newer version of the same broker covers its base
		found := false
		for _, n := range after {
			if n.Topic == m.Topic && n.Partition == m.Partition && n.BrokerID == m.BrokerID && n.CreatedAt.After(m.CreatedAt) &&
				n.BaseOffset <= m.BaseOffset && m.BaseOffset < n.NextSegmentBase {
				found = true
			}
		}
		if !found {
			t.Errorf("%s was deleted but no newer version covers it", k)
		}
	}
	fullAfter, pitAfter := filepath.Join(tmp, "full-after"), filepath.Join(tmp, "pit-after")
	if err := h29Restore(ctx, b, fullAfter, -1); err != nil {
		t.Fatal(err)
	}
	if err := h29Restore(ctx, b, pitAfter, pit); err != nil {
		t.Fatal(err)
	}
	n := h29SameLogs(t, fullBefore, fullAfter) + h29SameLogs(t, pitBefore, pitAfter)
	if n == 0 {
		t.Fatal("nothing restored")
	}
	// Second prune, same window start: nothing.
	rep2 := runPrune(time.Since(rep.WindowStart).Milliseconds() + 1)
	if len(rep2.Deleted) != 0 {
		t.Errorf("second prune deleted %v", rep2.Deleted)
	}
	var kinds []string
	for _, u := range rep.Units {
		kinds = append(kinds, u.Kind)
	}
	sort.Strings(kinds)
	t.Logf("kinds deleted: %v", kinds)
}

// h29Buf is a bytes.Buffer safe for a writer and a reader at once.
type h29Buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *h29Buf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *h29Buf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func h29Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
