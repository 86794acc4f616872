package archive

import (
	"strings"
	"testing"
	"time"
)

// h37TinyChunks is a record of n adjacent 1-byte chunks in one object.
func h37TinyChunks(n int) FileRecord {
	rec := FileRecord{Name: "00000000000000000000.log", Size: int64(n), DataKey: "k.sv2", SHA256: strings.Repeat("0", 64)}
	rec.Chunks = make([]Chunk, n)
	for i := range rec.Chunks {
		rec.Chunks[i] = Chunk{Offset: int64(i), StoredSize: 1, RawSize: 1, CRC32C: "00000000", RawCRC32C: "00000000", Compression: CompressionNone}
	}
	return rec
}

// A hostile manifest with hundreds of thousands of tiny chunks (it fits in
// MaxManifestSize) must be planned in linear time, not hang the reader.
func TestH37TinyChunksPlanLinear(t *testing.T) {
	rec := h37TinyChunks(300000)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := planRanges(rec)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("planning 300000 chunks took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("planning 300000 tiny chunks did not finish in 5s (quadratic)")
	}
}
