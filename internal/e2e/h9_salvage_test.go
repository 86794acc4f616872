package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestH9ZeroTailActiveSegment: a stopped broker's last segment whose file
// ends in zeros after its last complete batch (an unclean stop: the size
// was extended but the data never reached the disk) is archived up to that
// batch, as Kafka's recovery keeps it (a zero batch length is invalid and
// LogSegment.recover truncates there), reported as truncated, not corrupt.
func TestH9ZeroTailActiveSegment(t *testing.T) {
	h1SalvageTornTail(t, "zero-tailed active segment", func([]byte) []byte { return make([]byte, 4096) })
}

// TestH9DamagedTailStaysCorrupt: bytes after the last complete batch that
// are not zeros (a damaged batch, not an unwritten tail) keep the segment
// corrupt: only a partial batch or a zero-filled tail is salvaged.
func TestH9DamagedTailStaysCorrupt(t *testing.T) {
	e := h1Start(t)
	dir := h1LogDir(t, "__consumer_offsets-12")
	active := filepath.Join(dir, "__consumer_offsets-12", "00000000000000000862.log")
	orig := h1Read(t, active)
	tail := make([]byte, 4096)
	tail[2000] = 1
	if err := os.WriteFile(active, append(append([]byte{}, orig...), tail...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.agent(t, t.TempDir(), []string{dir}, "--include-active")
	if code != 1 || !strings.Contains(out, "1 corrupt") {
		t.Fatalf("agent --once --include-active: exit %d, want 1 with the segment corrupt\n%s\n%s", code, out, errOut)
	}
	if e.manifest(t, "__consumer_offsets-12", 862) != nil {
		t.Error("a damaged active segment was archived")
	}
}
