package archive

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/segvault/segvault/uploader"
)

// ReadFrom (what io.Copy uses) stores exactly what Write stores: the same
// record (size, SHA-256, chunks with their CRCs) and bytes that read back
// identical, whatever the reader's pieces (one byte, half reads, whole) and
// whether the file is smaller or larger than its SizeHint; a stored-as-is
// chunk's stored CRC-32C is its raw CRC-32C.
func TestH40ReadFromMatchesWrite(t *testing.T) {
	b, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const cs = 256 << 10
	rng := rand.New(rand.NewSource(40))
	random := make([]byte, 3*cs+777)
	rng.Read(random)
	for _, tc := range []struct {
		name string
		data []byte
		opts WriterOptions
	}{
		{"empty", nil, WriterOptions{}},
		{"small", compressible(1000), WriterOptions{SizeHint: 1000}},
		{"over-hint", compressible(5*cs + 3), WriterOptions{ChunkSize: cs, SizeHint: 1000}},
		{"zstd", compressible(4*cs + 5), WriterOptions{ChunkSize: cs, PartSize: uploader.MinPartSize}},
		{"as-is", random, WriterOptions{ChunkSize: cs}},
	} {
		want := h22WriteV2(t, b, "h40/"+tc.name+"-w", tc.data, tc.opts)
		for _, rd := range []struct {
			name string
			r    func([]byte) io.Reader
		}{
			{"one-byte", func(p []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(p)) }},
			{"half", func(p []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(p)) }},
			{"whole", func(p []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(p)} }},
		} {
			if rd.name == "one-byte" && len(tc.data) > 64<<10 {
				continue
			}
			key := "h40/" + tc.name + "-" + rd.name
			w, err := NewFileWriter(context.Background(), b, key, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(w, rd.r(tc.data))
			if err != nil || n != int64(len(tc.data)) {
				t.Fatalf("%s/%s: io.Copy: %d, %v", tc.name, rd.name, n, err)
			}
			got, err := w.Close()
			if err != nil {
				t.Fatal(err)
			}
			got.DataKey, want.DataKey = "", ""
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s/%s: ReadFrom stored\n%+v\nWrite stored\n%+v", tc.name, rd.name, got, want)
			}
			got.DataKey = key
			back, err := h22ReadFile(t, b, got, DecodeOptions{})
			if err != nil || !bytes.Equal(back, tc.data) {
				t.Fatalf("%s/%s: read back %d bytes (%v), want %d", tc.name, rd.name, len(back), err, len(tc.data))
			}
			for i, c := range got.Chunks {
				if c.Compression == CompressionNone && c.Encryption == "" && c.CRC32C != c.RawCRC32C {
					t.Fatalf("%s: stored-as-is chunk %d: crc32c %s, raw %s", tc.name, i, c.CRC32C, c.RawCRC32C)
				}
			}
		}
	}
}
