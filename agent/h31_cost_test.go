package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// h31Wchar is the bytes this process has passed to write(2) so far.
func h31Wchar(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no wchar in /proc/self/io")
	return 0
}

// h31MemBucket counts what the store is asked to write, so the state's
// writes can be told from the bucket's.
type h31Counting struct {
	Archive
	bytes int64
}

func (c *h31Counting) PutManifest(ctx context.Context, key string, data []byte) error {
	c.bytes += int64(len(data))
	return c.Archive.PutManifest(ctx, key, data)
}

// TestH31TailStateBytesPerRound: real capture rounds over 2,000
// partitions of which 1% (20) get a real batch per round; the bytes the
// round writes besides the bucket's objects (the tail state) must be
// proportional to the 20 changed partitions, not to the 2,000: well under
// one copy of the whole state per round (the old tail-state.json was
// written whole twice per round).
func TestH31TailStateBytesPerRound(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 partition dirs")
	}
	const parts, changing, rounds = 2000, 20, 6
	logs := h25LogDir(t)
	bkt, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &h31Counting{Archive: NewArchive(bkt, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}
	src := h25NewWriter(t, filepath.Join(logs, "light-0", "00000000000000000000.log"), h25StatusLog)
	paths := []string{src.path}
	for p := 1; p < parts; p++ {
		path := filepath.Join(logs, fmt.Sprintf("light-%d", p), "00000000000000000000.log")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, src.src[:src.bounds[0]], 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	stateDir := t.TempDir()
	a := h25NewAgentOn(t, logs, stateDir, store, nil)
	tl := newTailer(a)
	tl.round(context.Background()) // every partition captured once: the full state
	full := h31StateBytes(t, stateDir)
	var stateWrites int64
	pos := src.bounds[0]
	for r := 0; r < rounds; r++ {
		piece := src.src[pos:src.bounds[r+1]]
		pos = src.bounds[r+1]
		for i := 0; i < changing; i++ {
			p := paths[(r*changing+i*97)%parts]
			if p == src.path {
				p = paths[1]
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(piece)
			f.Close()
		}
		before, sb := h31Wchar(t), store.bytes
		tl.round(context.Background())
		w := h31Wchar(t) - before - (store.bytes - sb)
		if w > 0 {
			stateWrites += w
		}
	}
	per := stateWrites / rounds
	t.Logf("tail state, %d partitions, %d changing per round, real capture rounds: %d bytes written per round (the state files held %d bytes after the first round)", parts, changing, per, full)
	if per > full/4 {
		t.Fatalf("%d bytes of state written per round for %d changed partitions: not proportional to the change (whole state %d bytes)", per, changing, full)
	}
}

// h31StateBytes is the size of the tail state files in dir.
func h31StateBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "tail-state") {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
	}
	return n
}
