package fsutil

import (
	"bytes"
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
				switch how {
				case "write":
					for p := data; len(p) > 0; {
						k := min(len(p), 1+rng.Intn(3*directAlign))
						if n, err := f.Write(p[:k]); err != nil || n != k {
							t.Fatalf("%s: write %d: %d, %v", path, k, n, err)
						}
						p = p[k:]
					}
				case "copy":
					if n, err := io.Copy(f, bytes.NewReader(data)); err != nil || n != int64(size) {
						t.Fatalf("%s: copy: %d, %v", path, n, err)
					}
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				if _, err := f.Write([]byte("after")); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if want := append(bytes.Clone(data), "after"...); !bytes.Equal(got, want) {
					t.Fatalf("%s (%s, %d bytes): read back %d bytes that differ", path, how, size, len(got))
				}
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
			switch how {
			case "write":
				for p := data; len(p) > 0; {
					k := min(len(p), 1+rng.Intn(DirectBufferSize))
					if _, err := f.Write(p[:k]); err != nil {
						t.Fatal(err)
					}
					p = p[k:]
				}
			case "copy":
				if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			}
			if f.Direct() {
				t.Fatalf("%s, refused at direct write %d: still direct", how, failAt)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s, refused at direct write %d: read back %d bytes that differ from the %d written", how, failAt, len(got), len(data))
			}
		}
	}
}
