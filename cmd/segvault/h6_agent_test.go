package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestH6AgentRerunCountsAlreadyArchived: a second agent --once over the same
// log dir and state dir finds everything archived and says so: "N already
// archived" with N the segments the first run archived, not 0.
func TestH6AgentRerunCountsAlreadyArchived(t *testing.T) {
	tmp := t.TempDir()
	logs := filepath.Join(tmp, "kafka-logs")
	copyTree(t, fixture(t, biggerBrain), logs)
	args := []string{"--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--bucket", "file://" + filepath.Join(tmp, "bucket"), "--state-dir", filepath.Join(tmp, "state")}
	re := regexp.MustCompile(`(\d+) segments archived .*, (\d+) already archived`)
	out, errOut, code := runSegvault(t, args...)
	m := re.FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] == "0" {
		t.Fatalf("first run: exit %d\n%s\n%s", code, out, errOut)
	}
	archived := m[1]
	out, errOut, code = runSegvault(t, args...)
	m = re.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errOut)
	}
	if m[1] != "0" || m[2] != archived {
		t.Errorf("second run: %q, want 0 segments archived, %s already archived", strings.TrimSpace(out), archived)
	}
}
