package e2e

import (
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// segvaultBin builds the segvault binary once per test run.
func segvaultBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "segvault-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "segvault")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/segvault").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build segvault: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// TestCrashSafety kills the agent with SIGKILL at 20 random moments while
// it archives (uploads throttled so kills land mid-upload), restarting it
// each time. At the end every rolled segment is archived exactly once,
// every manifest verifies and no manifest is partial.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	bin := segvaultBin(t)
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	res, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 5, SegmentBytes: 48 << 10, Seed: 5,
		Topics: []brokersim.TopicSpec{
			{Name: "a", Partitions: 3, Codec: "none", Idempotent: true, Records: 12000, ValueBytes: 150},
			{Name: "b", Partitions: 2, Codec: "zstd", Transactional: true, AbortEvery: 4, Records: 3000},
		}})
	if err != nil {
		t.Fatal(err)
	}
	rolled := rolledSet{}
	rolled.observe(t, res)
	srv := miniotest.Start(t)
	bucketName := srv.NewBucket(t)
	state := t.TempDir()
	args := []string{"--log-format", "json", "agent", "--log-dirs", dir, "--bucket", "s3://" + bucketName, "--s3-endpoint", srv.Endpoint(), "--s3-insecure",
		"--s3-path-style", "--s3-region", "us-east-1", "--state-dir", state, "--settle-time", "0", "--scan-interval", "200ms",
		"--listen", "", "--upload-bandwidth", "700000"}
	env := append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 20; i++ {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rng.Intn(900)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if strings.Contains(stderr.String(), "panic") {
			t.Fatalf("agent panicked:\n%s", stderr.String())
		}
	}
	// A final clean run to completion.
	cmd := exec.Command(bin, append([]string{"--log-format", "json", "agent", "--once"}, args[3:]...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, out)
	}
	b := s3Bucket2(t, srv, bucketName)
	got := archivedVersions(t, b) // also fails on a version committed twice
	for k, versions := range rolled {
		for v := range versions {
			if !got[k][v] {
				t.Errorf("%s version %s was never archived", k, v)
			}
		}
	}
	for k, versions := range got {
		for v := range versions {
			if !rolled[k][v] {
				t.Errorf("%s: unexpected version %s", k, v)
			}
		}
	}
	scrubAll(t, b) // every manifest complete, every object present and intact
	n := 0
	for _, v := range rolled {
		n += len(v)
	}
	t.Logf("20 SIGKILLs: %d segments archived exactly once; %d objects in the bucket", n, countObjects(t, b))
}

// TestStorageOutage stops MinIO while the broker keeps rolling and its
// retention deletes segments the agent could not upload yet. Staging hard
// links keep them; when MinIO returns everything is archived. With a staging
// budget too small, the loss is recorded as a gap.
func TestStorageOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	for _, tc := range []struct {
		name     string
		budget   int64
		wantLost bool
	}{{"staging-keeps-data", 1 << 30, false}, {"over-budget-records-gap", 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "kafka-logs")
			br, err := brokersim.Start(ctx, brokersim.Config{Dir: dir, NodeID: 4, SegmentBytes: 16 << 10, Seed: 9,
				FileDeleteDelay: 50 * time.Millisecond,
				Topics:          []brokersim.TopicSpec{{Name: "events", Codec: "none", Records: 200}}})
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			srv := miniotest.Start(t)
			b := s3Bucket(t, srv)
			metrics := agent.NewMetrics(nil)
			a := newAgent(t, b, agent.Config{LogDirs: []string{dir}, ScanInterval: 300 * time.Millisecond, SettleTime: 0,
				StagingBudget: tc.budget}, metrics)
			actx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			srv.Stop() // the outage starts before the agent ever reaches the bucket
			go func() { done <- a.Run(actx, nil) }()
			t.Cleanup(func() { stop(); <-done })

			rolled := rolledSet{}
			for i := 0; i < 6; i++ {
				if _, err := br.Append(ctx, "events", 200); err != nil {
					t.Fatal(err)
				}
				rolled.observe(t, br.Result())
				time.Sleep(400 * time.Millisecond) // the agent scans (and stages) meanwhile
			}
			// Wait until the agent has seen (and, with room, staged) every rolled
			// segment, then retention deletes them all while the bucket is down.
			nRolled := 0
			for _, vs := range rolled {
				nRolled += len(vs)
			}
			waitFor(t, time.Minute, func() bool { return int(readGauge(metrics.LagSegments)) >= nRolled })
			for {
				p := br.Result().Partition("events", 0)
				if len(p.Segments) < 2 {
					break
				}
				if _, err := br.DeleteOldestSegment("events", 0); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(300 * time.Millisecond)
			if err := br.PurgeDeleted(); err != nil {
				t.Fatal(err)
			}
			srv.Restart()
			if tc.wantLost {
				waitFor(t, 60*time.Second, func() bool { return readCounter(metrics.SegmentsLost) > 0 && len(gapMarkers(t, b)) > 0 })
			} else {
				waitFor(t, 60*time.Second, func() bool {
					got := archivedVersions(t, b)
					for k, vs := range rolled {
						for v := range vs {
							if !got[k][v] {
								return false
							}
						}
					}
					return true
				})
				if lost := readCounter(metrics.SegmentsLost); lost != 0 {
					t.Errorf("%v segments lost although staging had room", lost)
				}
				scrubAll(t, b)
			}
		})
	}
}

// gapMarkers lists the gap markers in b.
func gapMarkers(t *testing.T, b uploader.Bucket) []string {
	t.Helper()
	var out []string
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if strings.Contains(oi.Key, "/gaps/") {
			out = append(out, oi.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
