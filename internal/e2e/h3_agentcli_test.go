package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/brokersim"
)

// TestH3OnceInterrupted: agent --once stopped by SIGTERM or SIGINT exits 130
// within the drain timeout and says it was interrupted.
func TestH3OnceInterrupted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 64 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Records: 20000, ValueBytes: 100}}}); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(segvaultBin(t), "agent", "--once", "--log-dirs", dir, "--bucket", "file://"+filepath.Join(t.TempDir(), "archive"),
			"--state-dir", t.TempDir(), "--settle-time", "0", "--listen", "", "--read-bandwidth", "20000", "--drain-timeout", "1s", "--normal-priority")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		time.Sleep(1500 * time.Millisecond)
		start := time.Now()
		cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: still running 15s after the signal:\n%s", sig, out.String())
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%v: exited %s after the signal (drain timeout 1s)", sig, d)
		}
		if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(out.String(), "interrupted") {
			t.Errorf("%v: want exit 130 saying interrupted, got %d:\n%s", sig, code, out.String())
		}
	}
}

// TestH3MissingLogDir: a nonexistent --log-dirs is a configuration error
// that says so (not "no cluster.id ... ZooKeeper-era broker?").
func TestH3MissingLogDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	code, out, _ := h3Run(t, 30*time.Second, "agent", "--once", "--log-dirs", missing, "--bucket", "file://"+filepath.Join(t.TempDir(), "archive"),
		"--state-dir", t.TempDir(), "--listen", "")
	if code != 2 || !strings.Contains(out, "log dir "+missing+" does not exist") || strings.Contains(out, "ZooKeeper") {
		t.Fatalf("want exit 2 saying the log dir does not exist, got %d:\n%s", code, out)
	}
}

// TestH3UnreadableMetaProperties: run as an unprivileged user, an
// unreadable meta.properties is exit 2 naming the file.
func TestH3UnreadableMetaProperties(t *testing.T) {
	root, err := os.MkdirTemp("", "h3-meta-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	src := copyTree(t, filepath.Join(fixturesRoot, "DonaldY__kafka-2.7.1/kafka-logs"))
	dir := filepath.Join(root, "kafka-logs")
	if err := os.Rename(src, dir); err != nil {
		t.Fatal(err)
	}
	state, archive := filepath.Join(root, "state"), filepath.Join(root, "archive")
	for _, d := range []string{state, archive} {
		os.Mkdir(d, 0o755)
		os.Chown(d, 65534, 65534)
	}
	os.Chmod(root, 0o755)
	meta := filepath.Join(dir, "meta.properties")
	os.Chmod(meta, 0o600) // owned by root: unreadable for uid 65534
	bin := segvaultBin(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "agent", "--once", "--log-dirs", dir, "--bucket", "file://"+archive, "--state-dir", state, "--listen", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = root
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), meta) || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("want exit 2 naming %s, got %d:\n%s", meta, code, out)
	}
}

// TestH3ConfigUnknownKey: the agent rejects a misspelled key in its config
// file (exit 2, naming the key and the file), as config check does; it
// never uploads plaintext because encryption-key-file was misspelled.
func TestH3ConfigUnknownKey(t *testing.T) {
	dir := copyTree(t, filepath.Join(fixturesRoot, "DonaldY__kafka-2.7.1/kafka-logs"))
	archive := filepath.Join(t.TempDir(), "archive")
	cfgPath := filepath.Join(t.TempDir(), "segvault.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("log-dirs: [%s]\nbucket: file://%s\nstate-dir: %s\nsettle-time: 0s\nencryption-key-flie: /etc/segvault/key\n",
		dir, archive, t.TempDir())), 0o644)
	for _, args := range [][]string{{"agent", "--once", "--listen", "", "--config", cfgPath}, {"config", "check", "--config", cfgPath}} {
		code, out, _ := h3Run(t, 30*time.Second, args...)
		if code != 2 || !strings.Contains(out, cfgPath) || !strings.Contains(out, `"encryption-key-flie"`) {
			t.Errorf("%s: want exit 2 naming the key and the file, got %d:\n%s", strings.Join(args, " "), code, out)
		}
	}
	if _, err := os.Stat(archive); err == nil {
		t.Fatal("the agent archived with a misspelled option")
	}
}

// TestH3RegexNoPanic: a topic pattern that compiles alone but not inside
// the filter's ^(?:...)$ (\Q quotes the closing paren) is a configuration
// error, never a panic.
func TestH3RegexNoPanic(t *testing.T) {
	dir := copyTree(t, filepath.Join(fixturesRoot, "DonaldY__kafka-2.7.1/kafka-logs"))
	for _, flag := range []string{"--include-topics", "--exclude-topics"} {
		code, out, _ := h3Run(t, 30*time.Second, "agent", "--once", "--log-dirs", dir, "--bucket", "file://"+filepath.Join(t.TempDir(), "archive"),
			"--state-dir", t.TempDir(), "--listen", "", flag, `\Qorders`)
		if code != 2 || strings.Contains(out, "panic") || !strings.Contains(out, flag[2:]) {
			t.Errorf("%s: want exit 2 naming the option, no panic; got %d:\n%s", flag, code, out)
		}
	}
}
