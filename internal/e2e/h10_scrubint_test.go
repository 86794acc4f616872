package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/miniotest"
)

// TestH10ScrubInterrupted: SIGINT during `verify --scrub` (real MinIO, real
// KRaft fixture archived with --include-active) exits 130 saying it was
// interrupted, without a Go panic and without a summary that calls the
// objects it had not matched yet "orphaned" or the reads the stop cut short
// "unreadable".
func TestH10ScrubInterrupted(t *testing.T) {
	srv := miniotest.Start(t)
	dir := copyTree(t, h4FixtureKRaft)
	name := srv.NewBucket(t)
	out, code := h4Run(t, srv, append([]string{"agent", "--once", "--include-active", "--log-dirs", dir, "--state-dir", t.TempDir(), "--settle-time", "0", "--listen", ""},
		h4S3Flags(srv, "s3://"+name)...)...)
	if code != 0 {
		t.Fatalf("agent: exit %d\n%s", code, out)
	}
	interrupted := false
	for _, delay := range []time.Duration{150 * time.Millisecond, 80 * time.Millisecond, 40 * time.Millisecond, 20 * time.Millisecond} {
		cmd := exec.Command(segvaultBin(t), append([]string{"verify", "--scrub"}, h4S3Flags(srv, "s3://"+name)...)...)
		cmd.Env = append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		if err == nil {
			continue // finished before the signal: try earlier
		}
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		interrupted = true
		if ee.ExitCode() != 130 || strings.Contains(stderr.String(), "panic") || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("SIGINT after %s: exit %d, want 130 and 'interrupted'\n%s", delay, ee.ExitCode(), stderr.String())
		}
		if strings.Contains(stdout.String(), "ORPHAN") || strings.Contains(stdout.String(), "files checked") {
			t.Errorf("SIGINT after %s: an interrupted scrub printed a summary as if it had finished:\n%s", delay, stdout.String())
		}
		break
	}
	if !interrupted {
		t.Skip("scrub always finished before the signal")
	}
}

// TestH10ScrubInterruptedKeepsCursor: an interrupted `verify --scrub
// --sample --scrub-state` run leaves the rotation cursor where it was, so
// the next run reads the window the stop cut short instead of skipping it.
func TestH10ScrubInterruptedKeepsCursor(t *testing.T) {
	srv := miniotest.Start(t)
	dir := copyTree(t, h4FixtureKRaft)
	name := srv.NewBucket(t)
	out, code := h4Run(t, srv, append([]string{"agent", "--once", "--include-active", "--log-dirs", dir, "--state-dir", t.TempDir(), "--settle-time", "0", "--listen", ""},
		h4S3Flags(srv, "s3://"+name)...)...)
	if code != 0 {
		t.Fatalf("agent: exit %d\n%s", code, out)
	}
	state := t.TempDir() + "/scrub.cursor"
	args := append([]string{"verify", "--scrub", "--sample", "0.9", "--scrub-state", state}, h4S3Flags(srv, "s3://"+name)...)
	if out, code := h4Run(t, srv, args...); code != 0 {
		t.Fatalf("first scrub: exit %d\n%s", code, out)
	}
	before, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, delay := range []time.Duration{150 * time.Millisecond, 80 * time.Millisecond, 40 * time.Millisecond, 20 * time.Millisecond} {
		cmd := exec.Command(segvaultBin(t), args...)
		cmd.Env = append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err == nil {
			before, _ = os.ReadFile(state) // finished: the cursor moved on, as it should
			continue
		}
		after, _ := os.ReadFile(state)
		if !bytes.Equal(before, after) {
			t.Errorf("interrupted scrub moved the cursor: %s -> %s", before, after)
		}
		return
	}
	t.Skip("scrub always finished before the signal")
}
