package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultMaxDecompressedSize caps what one batch may decompress to. It is a
// fixed size rather than a multiple of the batch so that the memory a deep
// scan needs per worker is known in advance: a 1 MiB batch (Kafka's default
// message.max.bytes) would need a 64x compression ratio to reach it. A
// cluster that stores larger or more compressible batches raises
// ReaderOptions.MaxDecompressedSize.
const DefaultMaxDecompressedSize = 64 << 20

// errTooBig marks a decompression bomb; it is reported inside a
// CorruptionError with check "decompress".
var errTooBig = errors.New("decompressed size exceeds the limit")

// xerialMagic opens a snappy-java SnappyOutputStream stream (xerial framing):
// magic, then int32 version and int32 min-compatible version, then
// [int32 length][raw snappy block]*.
var xerialMagic = [8]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

// lz4FrameMagic is the LZ4 frame format's magic number (little-endian on disk).
const lz4FrameMagic = 0x184D2204

// decompressor turns compressed batch payloads into bytes, reusing its output
// buffer and the per-codec decoders across batches. It never starts
// goroutines: lz4 and zstd are used in their synchronous modes.
type decompressor struct {
	limit int    // largest output accepted
	out   []byte // reused output buffer
	src   bytes.Reader
	gz    *gzip.Reader
	lz    *lz4.Reader
	lzFix lz4HeaderFix
	zs    *zstd.Decoder
	zsLim int // limit the zstd decoder was built with
}

// decompress returns the decompressed form of src, valid until the next call.
// fixLZ4Header repairs Kafka's pre-0.10 LZ4 frame header checksum (magic 0).
func (d *decompressor) decompress(c Codec, src []byte, fixLZ4Header bool) ([]byte, error) {
	switch c {
	case CodecGzip:
		d.src.Reset(src)
		var err error
		if d.gz == nil {
			d.gz, err = gzip.NewReader(&d.src)
		} else {
			err = d.gz.Reset(&d.src)
		}
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return d.readAll(d.gz, "gzip")
	case CodecSnappy:
		return d.snappy(src)
	case CodecLZ4:
		d.src.Reset(src)
		var rd io.Reader = &d.src
		if fixLZ4Header {
			d.lzFix.reset(src)
			rd = &d.lzFix
		}
		if d.lz == nil {
			d.lz = lz4.NewReader(rd)
		} else {
			d.lz.Reset(rd)
		}
		return d.readAll(d.lz, "lz4")
	case CodecZstd:
		if d.zs == nil || d.zsLim != d.limit {
			if d.zs != nil {
				d.zs.Close()
			}
			zs, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(d.limit)))
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
			d.zs, d.zsLim = zs, d.limit
		}
		out, err := d.zs.DecodeAll(src, d.out[:0])
		if cap(out) > cap(d.out) {
			d.out = out[:0]
		}
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || len(out) > d.limit {
			return nil, d.tooBig("zstd")
		}
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", c)
}

func (d *decompressor) tooBig(codec string) error {
	return fmt.Errorf("%s: %w (%d bytes; raise ReaderOptions.MaxDecompressedSize if this cluster really stores such batches)",
		codec, errTooBig, d.limit)
}

// readAll reads rd to EOF into the reused buffer, failing as soon as the
// output passes the limit, so a bomb costs at most limit bytes.
func (d *decompressor) readAll(rd io.Reader, codec string) ([]byte, error) {
	out := d.out[:0]
	for {
		if len(out) == cap(out) {
			if len(out) > d.limit {
				return nil, d.tooBig(codec)
			}
			n := min(max(2*cap(out), 64<<10), d.limit+1)
			grown := make([]byte, len(out), n)
			copy(grown, out)
			out = grown
			d.out = grown
		}
		n, err := rd.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > d.limit {
			return nil, d.tooBig(codec)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", codec, err)
		}
	}
}

// snappy decodes xerial-framed snappy, or a plain snappy block when the
// input does not start with the xerial header (as snappy-java's
// SnappyInputStream, which Kafka uses, also accepts). Blocks are decoded with
// the strict decoder: Kafka's (C++-derived) snappy rejects the s2 extensions
// that klauspost's fast decoder would accept.
func (d *decompressor) snappy(src []byte) ([]byte, error) {
	out := d.out[:0]
	if len(src) < xerialHeaderSize || !bytes.Equal(src[:8], xerialMagic[:]) {
		return d.snappyBlock(out, src)
	}
	p := src[xerialHeaderSize:]
	pos := xerialHeaderSize
	for len(p) > 0 {
		if len(p) < 4 {
			return nil, fmt.Errorf("snappy: xerial chunk header at compressed byte %d truncated", pos)
		}
		n := int32(binary.BigEndian.Uint32(p))
		if n < 0 || int(n) > len(p)-4 {
			return nil, fmt.Errorf("snappy: xerial chunk at compressed byte %d claims %d bytes, %d left", pos, n, len(p)-4)
		}
		var err error
		if out, err = d.snappyBlock(out, p[4:4+n]); err != nil {
			return nil, fmt.Errorf("%w (xerial chunk at compressed byte %d)", err, pos)
		}
		p = p[4+n:]
		pos += 4 + int(n)
	}
	return out, nil
}

// snappyBlock appends the decoding of one raw snappy block to out.
func (d *decompressor) snappyBlock(out, blk []byte) ([]byte, error) {
	n, err := snappy.DecodedLen(blk)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > d.limit-len(out) {
		return nil, d.tooBig("snappy")
	}
	if need := len(out) + n; need > cap(out) {
		grown := make([]byte, len(out), max(need, 2*cap(out)))
		copy(grown, out)
		out = grown
		d.out = grown
	}
	if _, err := snappy.DecodeStrict(out[len(out):len(out)+n], blk); err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return out[:len(out)+n], nil
}

// lz4HeaderFix is an io.Reader over an LZ4 frame whose header checksum byte
// is replaced by the correct one. Kafka before 0.10 (magic 0) computed that
// byte over the magic number too (KAFKA-3160), and Kafka's reader ignores it
// for magic 0, so we recompute it rather than reject the frame.
type lz4HeaderFix struct {
	head [4 + 2 + 8 + 4 + 1]byte
	n    int // bytes of head in use
	off  int // bytes of head already read
	rest bytes.Reader
}

func (f *lz4HeaderFix) reset(src []byte) {
	f.n, f.off = 0, 0
	hc := 6 // magic + FLG + BD
	if len(src) >= hc && binary.LittleEndian.Uint32(src) == lz4FrameMagic {
		if src[4]&0x08 != 0 { // content size
			hc += 8
		}
		if src[4]&0x01 != 0 { // dictionary id
			hc += 4
		}
		if len(src) > hc {
			f.n = copy(f.head[:], src[:hc+1])
			f.head[hc] = byte(xxh32Small(src[4:hc]) >> 8)
		}
	}
	f.rest.Reset(src[f.n:])
}

func (f *lz4HeaderFix) Read(p []byte) (int, error) {
	if f.off < f.n {
		n := copy(p, f.head[f.off:f.n])
		f.off += n
		return n, nil
	}
	return f.rest.Read(p)
}

// xxh32Small is XXH32 with seed 0 for inputs under 16 bytes, enough for an
// LZ4 frame descriptor (at most 14 bytes).
func xxh32Small(p []byte) uint32 {
	const (
		prime1 uint32 = 2654435761
		prime2 uint32 = 2246822519
		prime3 uint32 = 3266489917
		prime4 uint32 = 668265263
		prime5 uint32 = 374761393
	)
	h := prime5 + uint32(len(p))
	for ; len(p) >= 4; p = p[4:] {
		h += binary.LittleEndian.Uint32(p) * prime3
		h = bits.RotateLeft32(h, 17) * prime4
	}
	for _, c := range p {
		h += uint32(c) * prime5
		h = bits.RotateLeft32(h, 11) * prime1
	}
	h ^= h >> 15
	h *= prime2
	h ^= h >> 13
	h *= prime3
	h ^= h >> 16
	return h
}

// decoders pools record decoders (buffers plus gzip, lz4 and zstd state)
// across Scans, so a worker scanning many segments reuses them as the house
// style asks. A pooled decoder holds no goroutines, so dropping it is safe.
var decoders sync.Pool

func getDecoder(limit int) *recordDecoder {
	if d, ok := decoders.Get().(*recordDecoder); ok {
		d.limit = limit
		return d
	}
	return newRecordDecoder(limit)
}

func putDecoder(d *recordDecoder) {
	// Drop huge buffers rather than pin them in the pool.
	if cap(d.out) > DefaultMaxDecompressedSize {
		d.out = nil
	}
	clear(d.recs[:cap(d.recs)])
	clear(d.hdrs[:cap(d.hdrs)])
	decoders.Put(d)
}
