package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// h25Counting counts the PUTs and bytes an Archive is asked to store.
type h25Counting struct {
	Archive
	puts, bytes atomic.Int64
}

func (c *h25Counting) PutManifest(ctx context.Context, key string, data []byte) error {
	if strings.Contains(key, "/tails/") {
		c.puts.Add(1)
		c.bytes.Add(int64(len(data)))
	}
	return c.Archive.PutManifest(ctx, key, data)
}

// TestH25TailCostFigures: the cost figures of the issue-15 note. 2,000
// partitions with light traffic (two real batches, a few hundred bytes,
// per partition per interval): one pack and one manifest per round,
// whatever the partition count, against the two PUTs (data object and
// manifest) per partition and round a per-partition upload would make;
// and the bytes stored per byte produced.
func TestH25TailCostFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 partition dirs")
	}
	const parts, rounds = 2000, 3
	logs := h25LogDir(t)
	bkt, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &h25Counting{Archive: NewArchive(bkt, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{})}
	// The first partition's writer holds the real batches all partitions append.
	src := h25NewWriter(t, filepath.Join(logs, "light-0", "00000000000000000000.log"), h25StatusLog)
	paths := []string{src.path}
	for p := 1; p < parts; p++ {
		path := filepath.Join(logs, fmt.Sprintf("light-%d", p), "00000000000000000000.log")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	stateDir := t.TempDir()
	a := h25NewAgentOn(t, logs, stateDir, store, nil) // defaults: compression auto, zstd level 1
	tl := newTailer(a)
	tl.round(context.Background())
	var produced int64
	pos := 0
	var took time.Duration
	for r := 0; r < rounds; r++ {
		end := src.bounds[min(len(src.bounds)-1, (r+1)*2-1)]
		piece := src.src[pos:end]
		pos = end
		for _, p := range paths {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(piece)
			f.Close()
			produced += int64(len(piece))
		}
		start := time.Now()
		tl.round(context.Background())
		took += time.Since(start)
	}
	caps, n := h25Captures(t, bkt)
	if n != rounds || len(caps) != parts*rounds {
		t.Fatalf("%d manifests, %d captures; want %d and %d", n, len(caps), rounds, parts*rounds)
	}
	h25Chains(t, caps)
	puts := store.puts.Load()
	perDay := puts * (86400 / 60) / rounds
	perPartition := int64(parts) * 2 * (86400 / 60)
	t.Logf("tail capture, %d partitions, light traffic (%d bytes per partition per 60s round): %d PUTs in %d rounds = %d PUTs/day per broker at the 60s default (a per-partition upload: %d PUTs/day); %d bytes stored for %d produced = %.2f bytes stored per byte produced (pack %.2f, manifests %.2f); %.0f ms per round",
		parts, produced/int64(parts*rounds), puts, rounds, perDay, perPartition, store.bytes.Load(), produced,
		float64(store.bytes.Load())/float64(produced), float64(h25PackBytes(t, bkt))/float64(produced),
		float64(store.bytes.Load()-h25PackBytes(t, bkt))/float64(produced), float64(took.Milliseconds())/rounds)
	if fi, err := os.Stat(filepath.Join(stateDir, tailStateFile)); err == nil {
		t.Logf("tail state for %d partitions: %d bytes (written twice per round with captures)", parts, fi.Size())
	}
	if puts != 2*rounds {
		t.Errorf("%d PUTs for %d rounds: want one pack and one manifest per round", puts, rounds)
	}
}

// h25PackBytes sums the sizes of the tail packs in the bucket.
func h25PackBytes(t *testing.T, b uploader.Bucket) int64 {
	var n int64
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, ".pack") {
			n += oi.Size
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
