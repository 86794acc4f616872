package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

const h2Nobody = 65534

// h2OpenUp makes p and its parents up to the temp root traversable by
// anyone (t.TempDir dirs are 0700), so an unprivileged agent reaches them.
func h2OpenUp(t *testing.T, p string) {
	t.Helper()
	root := filepath.Clean(os.TempDir())
	for d := filepath.Clean(p); d != root && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// h2ChownTree gives a tree to uid/gid 65534.
func h2ChownTree(t *testing.T, root string) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, h2Nobody, h2Nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// h2NobodyBin returns a copy of the segvault binary that uid 65534 can run.
func h2NobodyBin(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(segvaultBin(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h2OpenUp(t, dir)
	p := filepath.Join(dir, "segvault")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func h2AsNobody(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: h2Nobody, Gid: h2Nobody}}
}

func h2ExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// h2Keys lists every key in the bucket.
func h2Keys(t *testing.T, b uploader.Bucket) []string {
	t.Helper()
	var keys []string
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestH2UnreadableSegmentIsAFailureNotAGap runs the agent binary as an
// unprivileged user over a copy of a real broker log dir in which one
// rolled .log is mode 000. The segment is not recorded as lost: --once
// exits 1 naming the file, no gap marker goes to the bucket, the daemon
// counts the failure and shows it on /readyz; once the mode is fixed, the
// next run with the same state dir archives it.
func TestH2UnreadableSegmentIsAFailureNotAGap(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the agent as another user")
	}
	bin := h2NobodyBin(t)
	src := filepath.Join(fixturesRoot, "DonaldY__kafka-2.7.1", "kafka-logs")
	dir := copyTree(t, src)
	h2OpenUp(t, dir)
	h2ChownTree(t, dir)
	bad := filepath.Join(dir, "__consumer_offsets-17", "00000000000000000000.log")
	if err := os.Chmod(bad, 0); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o750); err != nil {
		t.Fatal(err)
	}
	h2OpenUp(t, filepath.Dir(state))
	h2ChownTree(t, state)

	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	b := s3Bucket2(t, srv, name)
	args := []string{"--log-format", "json", "agent", "--log-dirs", dir, "--bucket", "s3://" + name, "--s3-endpoint", srv.Endpoint(),
		"--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1", "--state-dir", state, "--settle-time", "0", "--normal-priority"}
	env := append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
	once := func() (int, string) {
		cmd := exec.Command(bin, append(args, "--once", "--listen", "")...)
		cmd.Env = env
		h2AsNobody(cmd)
		out, err := cmd.CombinedOutput()
		return h2ExitCode(err), string(out)
	}
	noGaps := func() {
		t.Helper()
		for _, k := range h2Keys(t, b) {
			if strings.Contains(k, "/gaps/") {
				t.Errorf("gap marker written for a segment that is still on disk: %s", k)
			}
		}
	}
	archived := func() bool {
		for _, k := range h2Keys(t, b) {
			if strings.Contains(k, "/__consumer_offsets/17/") && strings.Contains(k, "/segments/00000000000000000000/") && strings.HasSuffix(k, archive.ManifestName) {
				return true
			}
		}
		return false
	}

	code, out := once()
	t.Logf("--once over the unreadable segment:\n%s", out)
	if code != 1 {
		t.Fatalf("--once over an unreadable segment: exit %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, "1 failed") || !strings.Contains(out, "0 lost") || !strings.Contains(out, bad) || !strings.Contains(out, "permission denied") {
		t.Errorf("summary does not name the failed file and its error:\n%s", out)
	}
	noGaps()
	if archived() {
		t.Fatal("the unreadable segment was archived?")
	}

	// The daemon: the failure is counted by stage and shown on /readyz.
	port := freePort(t)
	cmd := exec.Command(bin, append(args, "--scan-interval", "300ms", "--listen", fmt.Sprintf("127.0.0.1:%d", port))...)
	cmd.Env = env
	h2AsNobody(cmd)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	get := func(path string) (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitFor(t, 30*time.Second, func() bool {
		_, body := get("/readyz")
		return strings.Contains(body, bad)
	})
	if _, body := get("/readyz"); !strings.Contains(body, "permission denied") {
		t.Errorf("/readyz does not give the reason: %s", body)
	}
	_, metrics := get("/metrics")
	if !strings.Contains(metrics, `segvault_agent_failures_total{stage="read"}`) {
		t.Errorf("/metrics lacks the read failure:\n%s", metrics)
	}
	if strings.Contains(metrics, "segvault_agent_segments_lost_total 1") {
		t.Error("the unreadable segment was counted lost")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon: %v\n%s", err, stderr.String())
	}
	noGaps()

	// Fixed: the same state dir archives it.
	if err := os.Chmod(bad, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = once()
	if code != 0 {
		t.Fatalf("after chmod: exit %d\n%s", code, out)
	}
	if !archived() {
		t.Fatalf("the segment was not archived once readable:\n%s", out)
	}
	noGaps()
}

// TestH2SecondAgentRefused: a second agent on the same state dir (daemon or
// --once) exits 2 naming the pid of the one holding it.
func TestH2SecondAgentRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	bin := segvaultBin(t)
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 600}}}); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	args := []string{"agent", "--log-dirs", dir, "--bucket", "file://" + filepath.Join(t.TempDir(), "archive"), "--state-dir", state,
		"--settle-time", "0", "--listen", "", "--normal-priority"}
	first := exec.Command(bin, args...)
	var stderr strings.Builder
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	waitFor(t, 30*time.Second, func() bool { return strings.Contains(stderr.String(), "segvault agent started") })
	pid := strconv.Itoa(first.Process.Pid)
	for _, extra := range [][]string{nil, {"--once"}} {
		second := exec.Command(bin, append(args, extra...)...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = second.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			second.Process.Kill()
			<-done
			t.Fatalf("second agent %v did not refuse to start:\n%s", extra, out)
		}
		if code := h2ExitCode(err); code != 2 {
			t.Errorf("second agent %v: exit %d, want 2\n%s", extra, code, out)
		}
		if !strings.Contains(string(out), "pid "+pid) || !strings.Contains(string(out), state) {
			t.Errorf("second agent %v: message does not name the state dir and the holder's pid %s:\n%s", extra, pid, out)
		}
	}
	first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Fatalf("first agent: %v\n%s", err, stderr.String())
	}
	// Released on exit: a new agent runs.
	if out, err := exec.Command(bin, append(args, "--once")...).CombinedOutput(); err != nil {
		t.Fatalf("agent after the first stopped: %v\n%s", err, out)
	}
}
