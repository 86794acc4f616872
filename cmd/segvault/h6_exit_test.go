package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	h6BinOnce sync.Once
	h6BinPath string
	h6BinErr  error
)

// h6Binary builds the segvault binary once per test run.
func h6Binary(t *testing.T) string {
	t.Helper()
	h6BinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "h6-segvault-bin")
		if err != nil {
			h6BinErr = err
			return
		}
		os.Chmod(dir, 0o755) // runnable by an unprivileged user too
		h6BinPath = filepath.Join(dir, "segvault")
		out, err := exec.Command("go", "build", "-o", h6BinPath, ".").CombinedOutput()
		if err != nil {
			h6BinErr = errors.New(string(out))
		}
	})
	if h6BinErr != nil {
		t.Fatalf("go build: %v", h6BinErr)
	}
	return h6BinPath
}

// h6Exec runs the binary and returns its output and exit status.
func h6Exec(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(h6Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// TestH6UsageErrorsExit2: every kind of usage error urfave itself detects
// exits 2, against the real binary.
func TestH6UsageErrorsExit2(t *testing.T) {
	bucket := "file://" + t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown command", []string{"frobnicate"}},
		{"unknown global flag", []string{"--frobnicate", "ls", "--bucket", bucket}},
		{"unknown command flag", []string{"ls", "--frobnicate", "--bucket", bucket}},
		{"unknown subcommand flag", []string{"config", "check", "--frobnicate"}},
		{"missing required flag", []string{"restore", "--bucket", bucket}},
		{"bad float value", []string{"verify", "--scrub", "--sample", "abc", "--bucket", bucket}},
		{"bad bool value", []string{"ls", "--json=maybe", "--bucket", bucket}},
		{"bad int value", []string{"ls", "--s3-object-lock-days", "x", "--bucket", bucket}},
		{"bad duration value", []string{"agent", "--settle-time", "soon", "--bucket", bucket}},
		{"flag needs an argument", []string{"ls", "--bucket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h6Exec(t, tc.args...)
			if code != exitUsage {
				t.Errorf("segvault %s: exit %d, want 2\n%s\n%s", strings.Join(tc.args, " "), code, out, errOut)
			}
		})
	}
	// And a command's own failure is still 1, not 2.
	if _, errOut, code := h6Exec(t, "inspect", filepath.Join(t.TempDir(), "missing.log")); code == 0 || code == exitUsage && strings.Contains(errOut, "Incorrect Usage") {
		t.Errorf("inspect of a missing file: exit %d\n%s", code, errOut)
	}
}

// h6HangingS3 is a TCP listener that accepts connections and never answers:
// a store call against it blocks until the caller gives up.
func h6HangingS3(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// TestH6SignalExits130: SIGINT or SIGTERM during a long command exits 130
// and says it was interrupted.
func TestH6SignalExits130(t *testing.T) {
	addr := h6HangingS3(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, args := range [][]string{
			{"ls", "--bucket", "s3://h6-bucket", "--s3-endpoint", "http://" + addr, "--s3-insecure", "--s3-path-style",
				"--s3-access-key", "a", "--s3-secret-key", "b"},
			{"verify", "--scrub", "--bucket", "s3://h6-bucket", "--s3-endpoint", "http://" + addr, "--s3-insecure", "--s3-path-style",
				"--s3-access-key", "a", "--s3-secret-key", "b"},
		} {
			t.Run(sig.String()+"/"+args[0], func(t *testing.T) {
				cmd := exec.Command(h6Binary(t), args...)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(700 * time.Millisecond)
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					cmd.Process.Kill()
					<-done
					t.Fatalf("%s did not end within 20s of %v\n%s", args[0], sig, errb.String())
				}
				if code := cmd.ProcessState.ExitCode(); code != 130 {
					t.Errorf("%s after %v: exit %d (%v), want 130\n%s\n%s", args[0], sig, code, cmd.ProcessState, out.String(), errb.String())
				}
				if !strings.Contains(errb.String(), "interrupted") {
					t.Errorf("%s after %v: stderr does not say interrupted:\n%s", args[0], sig, errb.String())
				}
			})
		}
	}
}

// TestH6UnitRestartPreventExitStatus: the systemd unit does not restart the
// agent after a usage/configuration error (2), which no restart can fix, and
// does restart it after a failure (1).
func TestH6UnitRestartPreventExitStatus(t *testing.T) {
	f, err := os.Open("../../packaging/segvault.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var prevent []string
	restart := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "RestartPreventExitStatus="); ok {
			prevent = append(prevent, strings.Fields(v)...)
		}
		if v, ok := strings.CutPrefix(line, "Restart="); ok {
			restart = v
		}
	}
	if restart != "on-failure" {
		t.Errorf("Restart=%q, want on-failure", restart)
	}
	has := map[string]bool{}
	for _, v := range prevent {
		has[v] = true
	}
	if !has["2"] {
		t.Errorf("RestartPreventExitStatus=%v does not hold 2 (usage or configuration error)", prevent)
	}
	for _, v := range []string{"0", "1", "130"} {
		if has[v] {
			t.Errorf("RestartPreventExitStatus=%v holds %s", prevent, v)
		}
	}
}

// TestH6AgentOnceLogDirErrorsExit2: agent --once with a --log-dirs entry that
// does not exist, is not a directory, or whose meta.properties cannot be
// read (unprivileged user) is a configuration error (exit 2) that says so.
func TestH6AgentOnceLogDirErrorsExit2(t *testing.T) {
	tmp, err := os.MkdirTemp("", "h6-logdirs") // every parent reachable by the unprivileged user
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	notDir := filepath.Join(tmp, "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	locked := filepath.Join(tmp, "locked")
	copyTree(t, fixture(t, biggerBrain), locked)
	if err := os.Chmod(filepath.Join(locked, "meta.properties"), 0o600); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o777)
		}
		return nil
	})
	for _, tc := range []struct {
		dir, want string
		unpriv    bool
	}{
		{filepath.Join(tmp, "nonexistent"), "does not exist", false},
		{notDir, "not a directory", false},
		{locked, "meta.properties", true},
	} {
		run := filepath.Base(tc.dir)
		cmd := exec.Command(h6Binary(t), "agent", "--once", "--settle-time", "0s", "--listen", "", "--log-dirs", tc.dir,
			"--bucket", "file://"+filepath.Join(tmp, "bucket-"+run), "--state-dir", filepath.Join(tmp, "state-"+run))
		if tc.unpriv {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != exitUsage || !strings.Contains(errb.String(), tc.want) || !strings.Contains(errb.String(), tc.dir) {
			t.Errorf("--log-dirs %s: exit %d, want 2 and a message naming it with %q\n%s", tc.dir, code, tc.want, errb.String())
		}
	}
}
