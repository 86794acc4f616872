package fsutil

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// DirectFile writes exactly the bytes given, whatever the sizes (empty,
// under a block, a block, around the buffer size) and whether they come
// by Write in odd pieces or by io.Copy (ReadFrom), in a directory on disk
// (O_DIRECT) and, when the machine has one, on tmpfs (which may refuse it:
// the buffered fallback); a Write after Sync appends.
func TestH40DirectFileWritesExactBytes(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "segvault-h40-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	rng := rand.New(rand.NewSource(40))
	sizes := []int{0, 1, directAlign - 1, directAlign, directAlign + 1, DirectBufferSize - 1, DirectBufferSize, DirectBufferSize + 4097, 2*DirectBufferSize + 12345}
	directSeen := false
	for _, dir := range dirs {
		for _, size := range sizes {
			data := make([]byte, size)
			rng.Read(data)
			for _, how := range []string{"write", "copy"} {
				path := filepath.Join(dir, how+".bin")
				f, err := CreateDirect(path, 0o640)
				if err != nil {
					t.Fatal(err)
				}
				directSeen = directSeen || f.Direct()
				h40Fill(t, f, how, data, rng, 3*directAlign)
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				if _, err := f.Write([]byte("after")); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				h40ReadBack(t, path, append(bytes.Clone(data), "after"...), how)
				if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
					t.Fatalf("%s: mode %v", path, fi.Mode())
				}
			}
		}
	}
	if !directSeen {
		t.Fatalf("no file in %v was written with O_DIRECT", dirs)
	}
}

// A file system that accepts O_DIRECT at open and refuses a later direct
// write (EINVAL): the bytes already written stay, the refused block and
// everything after go through the page cache, in order, by Write and by
// ReadFrom alike.
func TestH40DirectFileFallsBackMidFile(t *testing.T) {
	orig := directWrite
	t.Cleanup(func() { directWrite = orig })
	rng := rand.New(rand.NewSource(41))
	data := make([]byte, 3*DirectBufferSize+5000)
	rng.Read(data)
	for _, how := range []string{"write", "copy"} {
		for _, failAt := range []int{1, 2} {
			calls := 0
			directWrite = func(f *os.File, b []byte) (int, error) {
				calls++
				if calls >= failAt {
					return 0, errInvalid
				}
				return f.Write(b)
			}
			path := filepath.Join(t.TempDir(), "f")
			f, err := CreateDirect(path, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if !f.Direct() {
				t.Skip("the temp dir's file system refuses O_DIRECT at open")
			}
			h40Fill(t, f, how, data, rng, DirectBufferSize)
			if f.Direct() {
				t.Fatalf("%s, refused at direct write %d: still direct", how, failAt)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			h40ReadBack(t, path, data, fmt.Sprintf("%s, refused at direct write %d", how, failAt))
		}
	}
}

// h40Fill writes data to f by Write in random pieces of at most maxPiece
// bytes ("write") or by io.Copy ("copy").
func h40Fill(t *testing.T, f *DirectFile, how string, data []byte, rng *rand.Rand, maxPiece int) {
	t.Helper()
	switch how {
	case "write":
		for p := data; len(p) > 0; {
			k := min(len(p), 1+rng.Intn(maxPiece))
			if n, err := f.Write(p[:k]); err != nil || n != k {
				t.Fatalf("%s: write %d: %d, %v", f.Name(), k, n, err)
			}
			p = p[k:]
		}
	case "copy":
		if n, err := io.Copy(f, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
			t.Fatalf("%s: copy: %d, %v", f.Name(), n, err)
		}
	}
}

// h40ReadBack checks that path holds exactly want.
func h40ReadBack(t *testing.T, path string, want []byte, what string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s (%s): read back %d bytes that differ from the %d written", path, what, len(got), len(want))
	}
}
