package archive

import (
	"bytes"
	"errors"
	"testing"

	"github.com/segvault/segvault/uploader"
)

func TestChunkRoundTrip(t *testing.T) {
	c := NewChunkCodec()
	k := testKey(t, 7)
	for _, raw := range [][]byte{nil, []byte("x"), compressible(3 << 20), randBytes(5, 1<<20+17)} {
		for _, comp := range []string{CompressionZstd, CompressionNone} {
			for _, key := range []*Key{nil, k} {
				prefix := []byte("prefix")
				stored, ch, err := c.EncodeChunk(bytes.Clone(prefix), raw, comp, 1, key)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(stored, prefix) || ch.StoredSize != int64(len(stored)-len(prefix)) || ch.RawSize != int64(len(raw)) {
					t.Fatalf("%s enc=%v: stored %d bytes, chunk %+v", comp, key != nil, len(stored), ch)
				}
				got, err := c.DecodeChunk([]byte("out"), stored[len(prefix):], ch, []*Key{k}, "obj#0")
				if err != nil || !bytes.Equal(got[3:], raw) || string(got[:3]) != "out" {
					t.Fatalf("%s enc=%v: decode %v", comp, key != nil, err)
				}
				if key != nil {
					if _, err := c.DecodeChunk(nil, stored[len(prefix):], ch, nil, "obj#0"); !errors.Is(err, uploader.ErrUnknownKey) {
						t.Fatalf("without the key: %v", err)
					}
				}
				if len(raw) == 0 {
					continue
				}
				bad := bytes.Clone(stored[len(prefix):])
				bad[len(bad)/2] ^= 1
				var ie *IntegrityError
				if _, err := c.DecodeChunk(nil, bad, ch, []*Key{k}, "obj#0"); !errors.As(err, &ie) || ie.Check != "chunk stored crc32c" || ie.Key != "obj#0" {
					t.Fatalf("corrupt stored byte: %v", err)
				}
				// A stored form that is intact but claims a smaller raw size
				// (a hostile manifest) never decodes past it.
				short := ch
				short.RawSize--
				if _, err := c.DecodeChunk(nil, stored[len(prefix):], short, []*Key{k}, "obj#0"); !errors.As(err, &ie) || ie.Check != "chunk raw size" {
					t.Fatalf("short raw size: %v", err)
				}
			}
		}
	}
}
