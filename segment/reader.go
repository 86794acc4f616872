package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReaderOptions tune a Reader. The zero value is usable.
type ReaderOptions struct {
	// BaseOffset is the segment's base offset from its file name; batches
	// below it are corrupt. Use -1 when unknown.
	BaseOffset int64
	// MaxBatchSize is the largest batch the Reader will buffer
	// (default DefaultMaxBatchSize). A larger one is reported as corrupt
	// without allocating, so memory stays bounded whatever the file holds.
	MaxBatchSize int
	// BufferSize is the read buffer (default 1 MiB). It grows, up to
	// MaxBatchSize, only to hold a batch that is really present in the file.
	BufferSize int
	// MaxDecompressedSize caps what one compressed batch (or legacy
	// wrapper) may decompress to (default DefaultMaxDecompressedSize). A
	// batch over it is reported as corrupt ("decompress" check) as soon as
	// the output passes the cap, so a decompression bomb costs at most this
	// much memory.
	MaxDecompressedSize int
}

// Reader iterates the batches of one segment file, sequentially, checking
// framing, magic, length, CRC and offset order (the shallow checks). It reads
// from an io.Reader so it can share one pass over the file with an upload.
//
//	r := segment.NewReader(f, size, path, segment.ReaderOptions{BaseOffset: base})
//	for r.Next() { b := r.Batch(); raw := r.Raw(); ... }
//	if err := r.Err(); err != nil { ... }
type Reader struct {
	src      io.Reader
	name     string
	size     int64 // bytes the source holds in all
	opts     ReaderOptions
	buf      []byte
	lo, hi   int   // buf[lo:hi] is unread data
	bufPos   int64 // file position of buf[lo]
	batch    Batch
	raw      []byte
	prevLast int64
	n        int // batches returned
	err      error
	done     bool

	dec    *recordDecoder // created on first use: shallow v2 scans never need it
	recs   []Record       // the current batch's records once decoded
	recsOK bool           // recs holds the current batch's records
	legacy legacyMessage  // the current legacy message
	one    [1]Record      // backing for an uncompressed legacy message's record
}

// defaultBufferSize is ReaderOptions.BufferSize's default.
const defaultBufferSize = 1 << 20

// readBufs pools default-sized read buffers for Scan, which knows when it is
// done with its Reader; zeroing a fresh 1 MiB per segment would otherwise
// cost a fifth of a shallow scan of a 1 MiB segment.
var readBufs sync.Pool

// NewReader returns a Reader over src, which holds size bytes in all.
func NewReader(src io.Reader, size int64, name string, opts ReaderOptions) *Reader {
	return newReader(src, size, name, opts, false)
}

func newReader(src io.Reader, size int64, name string, opts ReaderOptions, pooled bool) *Reader {
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = defaultBufferSize
	}
	if opts.MaxDecompressedSize <= 0 {
		opts.MaxDecompressedSize = DefaultMaxDecompressedSize
	}
	if opts.BufferSize > opts.MaxBatchSize {
		opts.BufferSize = opts.MaxBatchSize
	}
	if int64(opts.BufferSize) > size && size >= 0 {
		opts.BufferSize = int(max(size, 64))
	}
	r := &Reader{src: src, name: name, size: size, opts: opts, prevLast: -1}
	if pooled && opts.BufferSize <= defaultBufferSize {
		if b, ok := readBufs.Get().(*[]byte); ok {
			r.buf = *b
		} else {
			r.buf = make([]byte, defaultBufferSize)
		}
	} else {
		r.buf = make([]byte, opts.BufferSize)
	}
	return r
}

// Batch is the current batch header, valid until the next call to Next.
func (r *Reader) Batch() *Batch { return &r.batch }

// Raw is the current batch's bytes, from its baseOffset field to its end,
// valid until the next call to Next.
func (r *Reader) Raw() []byte { return r.raw }

// Pos is the file position after the last good batch: the valid prefix.
func (r *Reader) Pos() int64 { return r.bufPos }

// Count is the number of batches returned so far.
func (r *Reader) Count() int { return r.n }

// Err is the first error met, nil at a clean end of file.
func (r *Reader) Err() error { return r.err }

// Name is the file name the Reader reports in errors.
func (r *Reader) Name() string { return r.name }

func (r *Reader) fail(pos, base int64, check string, err error) bool {
	r.err = &CorruptionError{File: r.name, Pos: pos, BaseOffset: base, Check: check, Err: err}
	r.done = true
	return false
}

// fill makes buf[lo:lo+n] hold the next n bytes of the file, growing the
// buffer if needed. The caller has checked n against the remaining size.
func (r *Reader) fill(n int) error {
	if r.hi-r.lo >= n {
		return nil
	}
	if n > len(r.buf) {
		nb := make([]byte, max(n, 2*len(r.buf)))
		r.hi = copy(nb, r.buf[r.lo:r.hi])
		r.buf, r.lo = nb, 0
	} else if r.lo+n > len(r.buf) {
		r.hi = copy(r.buf, r.buf[r.lo:r.hi])
		r.lo = 0
	}
	for r.hi-r.lo < n {
		m, err := r.src.Read(r.buf[r.hi:])
		r.hi += m
		if r.hi-r.lo >= n {
			return nil
		}
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Next advances to the next batch. It returns false at the end of the file
// or at the first error (see Err).
//
// A legacy (magic 0/1) log entry is one Batch. A compressed legacy wrapper
// is decompressed and its inner messages checked here, even on this shallow
// path, because its first offset and record count exist only inside it; so
// BaseOffset is always the first inner offset, LastOffset the wrapper's
// offset and RecordCount the inner count (1 for a plain message). v2
// batches are never decompressed here and cost no allocation.
func (r *Reader) Next() bool {
	if r.done {
		return false
	}
	r.raw, r.recs, r.recsOK = nil, nil, false
	if r.n > 0 {
		r.lo += int(r.batch.Size())
		r.bufPos += r.batch.Size()
	}
	remaining := r.size - r.bufPos
	if remaining == 0 {
		r.done = true
		return false
	}
	pos := r.bufPos
	if remaining < offMagic+1 {
		return r.fail(pos, -1, "length", fmt.Errorf("%d bytes left, too few for a batch header: %w", remaining, ErrTruncated))
	}
	if err := r.fill(offMagic + 1); err != nil {
		return r.ioFail(pos, err)
	}
	p := r.buf[r.lo:r.hi]
	base := int64(binary.BigEndian.Uint64(p))
	length := int32(binary.BigEndian.Uint32(p[8:]))
	magic := int8(p[offMagic])
	switch magic {
	case MagicV2:
		if length < v2MinBatchLength {
			return r.fail(pos, base, "length", fmt.Errorf("batch length %d below the minimum %d", length, v2MinBatchLength))
		}
	case MagicV0, MagicV1:
		return r.nextLegacy(pos, base, length, magic, remaining)
	default:
		return r.fail(pos, base, "magic", fmt.Errorf("unknown magic %d", magic))
	}
	total := int64(length) + LogOverhead
	if total > int64(r.opts.MaxBatchSize) {
		if total > remaining {
			return r.fail(pos, base, "length", fmt.Errorf("batch length %d runs past the end of the file (%d bytes left): %w", length, remaining, ErrTruncated))
		}
		return r.fail(pos, base, "length", fmt.Errorf("batch of %d bytes exceeds the %d-byte limit", total, r.opts.MaxBatchSize))
	}
	if total > remaining {
		return r.fail(pos, base, "length", fmt.Errorf("batch length %d runs past the end of the file (%d bytes left): %w", length, remaining, ErrTruncated))
	}
	if err := r.fill(int(total)); err != nil {
		return r.ioFail(pos, err)
	}
	raw := r.buf[r.lo : r.lo+int(total)]
	b := &r.batch
	b.decodeV2Header(raw)
	b.Pos = pos
	if check, err := b.checkV2(raw); err != nil {
		return r.fail(pos, base, check, err)
	}
	if !r.checkOrder(pos, b) {
		return false
	}
	r.raw = raw
	r.n++
	return true
}

// checkOrder enforces offsets above the segment base and strictly increasing.
func (r *Reader) checkOrder(pos int64, b *Batch) bool {
	if r.opts.BaseOffset >= 0 && b.BaseOffset < r.opts.BaseOffset {
		return r.fail(pos, b.BaseOffset, "offset", fmt.Errorf("base offset %d below the segment base offset %d", b.BaseOffset, r.opts.BaseOffset))
	}
	if b.LastOffset()-max(r.opts.BaseOffset, 0) > 1<<31-1 && r.opts.BaseOffset >= 0 {
		return r.fail(pos, b.BaseOffset, "offset", fmt.Errorf("last offset %d is more than 2^31-1 above the segment base %d", b.LastOffset(), r.opts.BaseOffset))
	}
	if r.prevLast >= 0 && b.BaseOffset <= r.prevLast {
		return r.fail(pos, b.BaseOffset, "offset", fmt.Errorf("base offset %d not above the previous batch's last offset %d", b.BaseOffset, r.prevLast))
	}
	r.prevLast = b.LastOffset()
	return true
}

func (r *Reader) ioFail(pos int64, err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// The file shrank under us or size was wrong: a torn tail.
		return r.fail(pos, -1, "length", fmt.Errorf("file ended early: %w", ErrTruncated))
	}
	r.err = fmt.Errorf("read %s at byte %d: %w", r.name, pos, err)
	r.done = true
	return false
}

// decoder returns the Reader's record decoder, taking one from the pool on
// first use.
func (r *Reader) decoder() *recordDecoder {
	if r.dec == nil {
		r.dec = getDecoder(r.opts.MaxDecompressedSize)
	}
	return r.dec
}

// release hands the decoder and a default-sized buffer back to their pools;
// the Reader must not be used afterwards.
func (r *Reader) release() {
	if r.dec != nil {
		putDecoder(r.dec)
		r.dec = nil
	}
	if len(r.buf) == defaultBufferSize {
		b := r.buf
		readBufs.Put(&b)
	}
	r.buf, r.raw, r.recs, r.done = nil, nil, nil, true
}

// Records decompresses and parses the current batch's records and runs the
// deep checks (package doc). The slice, and every Key, Value and Headers in
// it, alias the Reader's buffers and stay valid until the next call to Next
// or Records. A failed check stops the Reader like a shallow one: the
// *CorruptionError is returned and kept in Err, and Pos stays at the start of
// the batch, so the valid prefix excludes it.
//
//	for r.Next() {
//		recs, err := r.Records()
//		if err != nil { break } // r.Err() == err
//		for _, rec := range recs { fmt.Println(rec.Offset, rec.Timestamp, rec.Key, rec.Value) }
//	}
func (r *Reader) Records() ([]Record, error) {
	if r.raw == nil {
		if r.err != nil {
			return nil, r.err
		}
		return nil, errNoBatch
	}
	if r.recsOK {
		return r.recs, nil
	}
	b := &r.batch
	if b.Magic != MagicV2 {
		r.recs, r.recsOK = r.legacyRecord(), true
		return r.recs, nil
	}
	recs, bc := r.decoder().decodeV2(b, r.raw)
	if bc != nil {
		r.fail(b.Pos, b.BaseOffset, bc.check, bc.err)
		r.raw = nil
		return nil, r.err
	}
	r.recs, r.recsOK = recs, true
	return recs, nil
}
