package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestH3OpenRegularRefusesFIFO: a FIFO named like a segment is refused at
// once (no writer: a plain open would block for ever), naming the file.
func TestH3OpenRegularRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "00000000000000000000.log")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := OpenRegular(p); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file: fifo") {
			t.Fatalf("want a not-regular error naming %s, got %v", p, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OpenRegular blocked on a FIFO")
	}
	if _, err := ReadFileRegular(t.TempDir()); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory: %v", err)
	}
	if _, err := OpenRegular(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestH3OpenRegularReads: a regular file reads normally (blocking mode back).
func TestH3OpenRegularReads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("hello"), 0o644)
	data, err := ReadFileRegular(p)
	if err != nil || string(data) != "hello" {
		t.Fatalf("%q %v", data, err)
	}
	f, err := OpenRegular(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fl, _ := fcntlFlags(f)
	if fl&syscall.O_NONBLOCK != 0 {
		t.Fatal("O_NONBLOCK still set")
	}
}

func fcntlFlags(f *os.File) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
