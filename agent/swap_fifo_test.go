package agent

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/fsutil"
)

// TestSwapFIFORefused: a FIFO named like a cleaner swap is refused at once,
// never opened for a blocking read (the scan reads .log.swap files).
func TestSwapFIFORefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "00000000000000000000.log.swap")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := swapNextOffset(p, 0); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, fsutil.ErrNotRegular) {
			t.Fatalf("swap FIFO: %v, want a not-a-regular-file error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO named like a .log.swap blocks")
	}
}
