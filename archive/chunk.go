package archive

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/segvault/segvault/uploader"
)

// ChunkCodec encodes and decodes v2 chunks (docs/FORMAT.md, "Format v2"):
// one chunk is one zstd frame (or the raw bytes as they are), sealed as one
// complete aes-256-gcm-stream-v1 message when a key is given, so any chunk
// decodes on its own. A ChunkCodec keeps a bounded free list of zstd encoders; it is safe for
// concurrent use, and encoding different chunks on different goroutines is
// how a large file compresses on every core.
type ChunkCodec struct {
	mu    sync.Mutex
	pools map[zstd.EncoderLevel]chan *zstd.Encoder
}

// NewChunkCodec returns a ChunkCodec.
func NewChunkCodec() *ChunkCodec {
	return &ChunkCodec{pools: make(map[zstd.EncoderLevel]chan *zstd.Encoder)}
}

// chunkZstdWindow is the window of a chunk's encoder. Its history buffer
// is most of an encoder's memory (8 MiB at 4 MiB), but a smaller one loses
// the repeats further apart: a segment tiled from a 1 MiB template (as the
// benchmarks build them) stored 431 MB of 3 GiB at 1 MiB against 151 MB at
// 4 MiB, so the window stays the chunk size.
const chunkZstdWindow = zstdWindow

// encoderPool returns an encoder to its free list; one more than the list
// keeps is dropped. Unlike a sync.Pool the list survives garbage
// collections: encoders (a few MiB each) are built once per process, not
// after every GC, so they are not garbage that grows the heap.
func encoderPool(p chan *zstd.Encoder, enc *zstd.Encoder) {
	select {
	case p <- enc:
	default:
	}
}

func (c *ChunkCodec) encoder(level int) (*zstd.Encoder, chan *zstd.Encoder, error) {
	if level == 0 {
		level = 3
	}
	if level < 1 || level > 22 {
		return nil, nil, fmt.Errorf("zstd level %d outside 1..22", level)
	}
	l := zstd.EncoderLevelFromZstd(level)
	c.mu.Lock()
	p := c.pools[l]
	if p == nil {
		p = make(chan *zstd.Encoder, runtime.GOMAXPROCS(0)+1) // one per chunk slot
		c.pools[l] = p
	}
	c.mu.Unlock()
	select {
	case enc := <-p:
		return enc, p, nil
	default:
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(chunkZstdWindow), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true)) // the chunk's raw CRC-32C is the check
	if err != nil {
		return nil, nil, err
	}
	return enc, p, nil
}

// EncodeChunk appends the stored form of raw to dst (compression is
// CompressionZstd at level, or CompressionNone; key nil means no
// encryption) and describes it. The returned Chunk has Key and Offset unset:
// where the chunk is stored is the caller's business.
func (c *ChunkCodec) EncodeChunk(dst, raw []byte, compression string, level int, key *Key) ([]byte, Chunk, error) {
	ch := Chunk{RawSize: int64(len(raw)), RawCRC32C: formatCRC(crc32.Checksum(raw, castagnoli)), Compression: compression}
	start := len(dst)
	var body []byte
	switch compression {
	case CompressionZstd:
		enc, pool, err := c.encoder(level)
		if err != nil {
			return dst, Chunk{}, err
		}
		if key == nil {
			dst = enc.EncodeAll(raw, dst)
		} else {
			body = enc.EncodeAll(raw, nil)
		}
		encoderPool(pool, enc)
	case CompressionNone:
		if key == nil {
			dst = append(dst, raw...)
		} else {
			body = raw
		}
	default:
		return dst, Chunk{}, fmt.Errorf("chunk: unknown compression %q", compression)
	}
	if key != nil {
		buf := bytes.NewBuffer(dst)
		ew, err := newEncryptWriter(buf, key, cryptDefaultExp)
		if err != nil {
			return dst, Chunk{}, err
		}
		if _, err := ew.Write(body); err != nil {
			return dst, Chunk{}, err
		}
		if err := ew.Close(); err != nil {
			return dst, Chunk{}, err
		}
		dst = buf.Bytes()
		ch.Encryption, ch.KeyID = EncryptionAESGCMStream, key.ID()
	}
	stored := dst[start:]
	ch.StoredSize = int64(len(stored))
	if compression == CompressionNone && key == nil {
		ch.CRC32C = ch.RawCRC32C // the same bytes
	} else {
		ch.CRC32C = formatCRC(crc32.Checksum(stored, castagnoli))
	}
	return dst, ch, nil
}

// DecodeChunk checks stored against ch (size and CRC-32C of the stored
// bytes), decrypts it with the key ch.KeyID names, decompresses it (never
// past ch.RawSize, so a decompression bomb costs nothing) and checks the raw
// size and CRC-32C, appending the raw bytes to dst. where names the chunk in
// errors (object key and chunk index); every mismatch is an *IntegrityError.
func (c *ChunkCodec) DecodeChunk(dst, stored []byte, ch Chunk, keys []*Key, where string) ([]byte, error) {
	fail := func(check, rec, comp string, err error) ([]byte, error) {
		return dst, &IntegrityError{Key: where, Check: check, Recorded: rec, Computed: comp, Err: err}
	}
	if int64(len(stored)) != ch.StoredSize {
		return fail("chunk stored size", fmt.Sprint(ch.StoredSize), fmt.Sprint(len(stored)), nil)
	}
	if got := formatCRC(crc32.Checksum(stored, castagnoli)); got != ch.CRC32C {
		return fail("chunk stored crc32c", ch.CRC32C, got, nil)
	}
	body := stored
	if ch.Encryption != EncryptionNone {
		if ch.Encryption != EncryptionAESGCMStream {
			return fail("chunk encryption", "", "", fmt.Errorf("unknown encryption %q", ch.Encryption))
		}
		var key *Key
		for _, k := range keys {
			if k.ID() == ch.KeyID {
				key = k
			}
		}
		if key == nil {
			return dst, fmt.Errorf("%s: encrypted with key %s: %w", where, ch.KeyID, uploader.ErrUnknownKey)
		}
		dr, err := newDecryptReader(bytes.NewReader(stored), key)
		if err != nil {
			return fail("decrypt", "", "", err)
		}
		plain, err := io.ReadAll(io.LimitReader(dr, ch.RawSize+zstdMaxWindow+1))
		if err != nil {
			return fail("decrypt", "", "", err)
		}
		body = plain
	}
	start := len(dst)
	switch ch.Compression {
	case CompressionNone:
		dst = append(dst, body...)
	case CompressionZstd:
		d := zstdDecoders.Get().(*zstd.Decoder)
		defer zstdDecoders.Put(d)
		if err := d.Reset(bytes.NewReader(body)); err != nil {
			return fail("decompress", "", "", err)
		}
		if int64(cap(dst)-len(dst)) < ch.RawSize+1 {
			dst = append(dst[:len(dst):len(dst)], make([]byte, ch.RawSize+1)...)[:len(dst)]
		}
		n, err := io.ReadFull(d, dst[start:start+int(ch.RawSize)+1])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fail("decompress", "", "", err)
		}
		dst = dst[:start+n]
	default:
		return fail("chunk compression", "", "", fmt.Errorf("unknown compression %q", ch.Compression))
	}
	raw := dst[start:]
	if int64(len(raw)) != ch.RawSize {
		return fail("chunk raw size", fmt.Sprint(ch.RawSize), fmt.Sprintf("%d or more", len(raw)), nil)
	}
	if got := formatCRC(crc32.Checksum(raw, castagnoli)); got != ch.RawCRC32C {
		return fail("chunk raw crc32c", ch.RawCRC32C, got, nil)
	}
	return dst, nil
}
