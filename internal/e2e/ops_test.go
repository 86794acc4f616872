package e2e

import (
	"context"
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

	"github.com/segvault/segvault/internal/brokersim"
)

// TestAgentOperations runs the agent binary as a daemon: /healthz, /readyz
// and /metrics answer, a SIGHUP reloads the config file (a new exclude
// filter takes effect), and SIGTERM drains and exits 0.
func TestAgentOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	bin := segvaultBin(t)
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "keep", Records: 600}, {Name: "later", Records: 600}}}); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "archive")
	cfgPath := filepath.Join(t.TempDir(), "segvault.yaml")
	writeCfg := func(exclude string) {
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("log-dirs: [%s]\nbucket: file://%s\nstate-dir: %s\nsettle-time: 0s\nscan-interval: 300ms\nexclude-topics: [%s]\n",
			dir, archive, filepath.Join(filepath.Dir(cfgPath), "state"), exclude)), 0o644)
	}
	writeCfg("later")
	port := freePort(t)
	cmd := exec.Command(bin, "--log-format", "json", "agent", "--config", cfgPath, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
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
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 30*time.Second, func() bool { c, _ := get("/readyz"); return c == 200 })
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("/healthz %d", c)
	}
	archived := func() (keep, later int) {
		filepath.Walk(archive, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Name() == "manifest.json" {
				if strings.Contains(p, "/topics/keep/") {
					keep++
				} else if strings.Contains(p, "/topics/later/") {
					later++
				}
			}
			return nil
		})
		return
	}
	waitFor(t, 30*time.Second, func() bool { k, _ := archived(); return k > 0 })
	if _, l := archived(); l != 0 {
		t.Fatal("excluded topic archived")
	}
	_, metrics := get("/metrics")
	for _, m := range []string{"segvault_agent_segments_archived_total", "segvault_agent_lag_segments", "segvault_agent_last_success_timestamp_seconds",
		"segvault_agent_segments_lost_total", "segvault_agent_corrupt_segments_total", "segvault_agent_inotify_watches"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// SIGHUP: the new config (no exclusion) is applied without a restart.
	writeCfg("")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, func() bool { _, l := archived(); return l > 0 })
	// SIGTERM: drain and exit cleanly.
	cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("agent exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if !strings.Contains(stderr.String(), "config reloaded") || !strings.Contains(stderr.String(), "segvault agent stopped") {
		t.Fatalf("log lacks reload/stop lines:\n%s", stderr.String())
	}
}
