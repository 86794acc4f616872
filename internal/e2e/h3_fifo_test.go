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
	"strings"
	"syscall"
	"testing"
	"time"
)

// h3FixtureWithFIFO copies a real broker-written log dir (three partitions
// with a rolled segment each) and replaces one rolled .log by a FIFO.
func h3FixtureWithFIFO(t *testing.T) (dir, fifo string) {
	t.Helper()
	dir = copyTree(t, filepath.Join(fixturesRoot, "DonaldY__kafka-2.7.1/kafka-logs"))
	fifo = filepath.Join(dir, "__consumer_offsets-17", "00000000000000000000.log")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, fifo
}

// h3Run runs the binary with a deadline, so a hang fails the test instead
// of blocking it; it returns the exit code and the combined output.
func h3Run(t *testing.T, timeout time.Duration, args ...string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, segvaultBin(t), args...)
	cmd.WaitDelay = time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("segvault %s: still running after %s (killed):\n%s", strings.Join(args, " "), timeout, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out), took
}

// TestH3FIFOAgentOnce: agent --once over a real log dir in which one rolled
// segment is a FIFO exits 1 promptly, names the file and archives the rest.
func TestH3FIFOAgentOnce(t *testing.T) {
	dir, fifo := h3FixtureWithFIFO(t)
	archive := filepath.Join(t.TempDir(), "archive")
	code, out, _ := h3Run(t, 60*time.Second, "agent", "--once", "--log-dirs", dir, "--bucket", "file://"+archive,
		"--state-dir", t.TempDir(), "--settle-time", "0", "--listen", "", "--normal-priority")
	if code != 1 || !strings.Contains(out, fifo) || !strings.Contains(out, "not a regular file: fifo") {
		t.Fatalf("want exit 1 naming %s as not a regular file, got %d:\n%s", fifo, code, out)
	}
	if !strings.Contains(out, " 2 segments archived") || !strings.Contains(out, "0 lost, 1 failed") {
		t.Fatalf("want the two other rolled segments archived, the FIFO failed (not lost):\n%s", out)
	}
	gaps := 0
	filepath.Walk(archive, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), "gap") {
			gaps++
		}
		return nil
	})
	if gaps != 0 {
		t.Fatalf("a refused FIFO must not become a gap marker (%d found)", gaps)
	}
}

// TestH3FIFODaemonSIGTERM: the daemon with a FIFO segment stays responsive
// and SIGTERM ends it within --drain-timeout.
func TestH3FIFODaemonSIGTERM(t *testing.T) {
	dir, _ := h3FixtureWithFIFO(t)
	port := freePort(t)
	cmd := exec.Command(segvaultBin(t), "agent", "--log-dirs", dir, "--bucket", "file://"+filepath.Join(t.TempDir(), "archive"),
		"--state-dir", t.TempDir(), "--settle-time", "0", "--scan-interval", "300ms", "--drain-timeout", "2s",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--normal-priority")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	waitFor(t, 30*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "segvault_agent_segments_archived_total 2")
	})
	time.Sleep(time.Second) // the FIFO's shipment has been tried by now
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("exited %s after SIGTERM, drain timeout 2s", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM (drain timeout 2s):\n%s", out.String())
	}
	if !strings.Contains(out.String(), "not a regular file: fifo") {
		t.Fatalf("the FIFO was not reported:\n%s", out.String())
	}
}

// TestH3FIFOVerifyInspect: verify and inspect refuse a FIFO at once.
func TestH3FIFOVerifyInspect(t *testing.T) {
	dir, fifo := h3FixtureWithFIFO(t)
	for _, args := range [][]string{{"verify", fifo}, {"verify", filepath.Dir(fifo)}, {"verify", dir}, {"inspect", fifo}} {
		code, out, _ := h3Run(t, 20*time.Second, args...)
		if code == 0 || !strings.Contains(out, fifo) || !strings.Contains(out, "not a regular file: fifo") {
			t.Errorf("segvault %s: want an error naming the FIFO, got %d:\n%s", strings.Join(args, " "), code, out)
		}
	}
}
