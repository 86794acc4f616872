package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segvault/segvault/uploader"
)

// Defaults of a FileWriter (docs/FORMAT.md, "Format v2").
const (
	// DefaultPartSize is the target size of one uploaded part: consecutive
	// whole chunks are grouped until a part reaches it.
	DefaultPartSize = 8 << 20
	// DefaultPartBuffers is how many part buffers of its own one file uses;
	// beside them it borrows from the SharedPartBuffers all writers share,
	// so one part fills while another uploads.
	DefaultPartBuffers = 1
	// SharedPartBuffers is the process-wide pool of part buffers a writer
	// borrows beside its own while it is the only writer of a multi-part
	// file: the part memory of n concurrent writers is n x PartBuffers
	// parts (plus SharedPartBuffers when n is 1). A writer never needs a
	// shared buffer to make progress (its own comes back when its upload
	// ends), so borrowing cannot deadlock.
	SharedPartBuffers = 1
	// autoLevel is the zstd level of CompressionAuto when Level is 0.
	autoLevel = 1
)

// WriterOptions configure a FileWriter.
type WriterOptions struct {
	// Name and ModTime go into the FileRecord as they are.
	Name    string
	ModTime time.Time
	// Compression: CompressionAuto (also ""): chunk 0 is compressed with
	// zstd and when it stores more than 90% of its raw size the whole file is
	// stored as it is; CompressionZstd or CompressionNone force.
	Compression string
	// Level is the zstd level, 1..22; 0 means 1 for auto and 3 for zstd.
	Level int
	// Key enables client-side encryption of every chunk.
	Key *Key
	// ContentType and Metadata are passed to the store.
	ContentType string
	Metadata    map[string]string
	// ChunkSize (default DefaultChunkSize) is the raw size of a chunk.
	ChunkSize int
	// PartSize (default DefaultPartSize, at least uploader.MinPartSize) is
	// the target part size.
	PartSize int
	// Workers (default GOMAXPROCS) bounds the chunks being encoded at once;
	// all writers together also have at most GOMAXPROCS+1 chunks alive.
	Workers int
	// PartBuffers (default DefaultPartBuffers) is the writer's own part
	// buffers; alone, it borrows more from the SharedPartBuffers pool.
	PartBuffers int
	// Codec is shared by writers (nil: a package-wide one).
	Codec *ChunkCodec
	// SizeHint, if > 0, is the file's expected size: buffers are sized for
	// it (a small file does not take chunk- and part-sized buffers).
	SizeHint int64
}

// bufSize is the capacity of a new chunk or part buffer of limit bytes.
func (w *FileWriter) bufSize(limit int) int {
	if h := w.opts.SizeHint; h > 0 && h < int64(limit) {
		return int(h) + 1<<10 // room for an encoded chunk's overhead
	}
	return limit
}

var defaultCodec = NewChunkCodec()

// FileWriter stores one file in format v2 in one pass: the bytes written to
// it, in file order, are hashed (SHA-256, once, in the caller's goroutine),
// cut into chunks, the chunks encoded on up to Workers goroutines, grouped
// in order into parts and the parts uploaded as one streaming upload
// (uploader.CreateStream) while the file is still being written. A file of
// one part is one Create; an empty file stores no object. Memory is bounded
// process-wide: GOMAXPROCS+1 chunks alive (filling, encoding or waiting
// for a part) over all writers, PartBuffers parts per writer, plus
// SharedPartBuffers parts borrowed by a writer working alone.
//
// Write, Close and Abort are called from one goroutine. The object appears
// at the key only when Close succeeds; a failed Close or an Abort leaves
// nothing.
type FileWriter struct {
	ctx    context.Context
	cancel context.CancelFunc
	b      uploader.BucketWriter
	key    string
	opts   WriterOptions
	codec  *ChunkCodec

	sha   hash.Hash
	size  int64
	raw   []byte // the chunk being filled
	nextI int
	comp  string // decided compression; "" until chunk 0 for auto

	slots   chan struct{}  // chunks in flight (Workers)
	order   chan *chunkJob // chunks in file order, to the assembler
	asmDone chan struct{}

	// assembler state (its goroutine only until asmDone)
	chunks   []Chunk
	objOff   int64
	cur      []byte
	partN    int
	stream   uploader.ObjectStream
	single   []byte // the only part of a one-part file, for Close's Create
	curShr   bool   // cur (or single) is a buffer of sharedParts
	large    bool   // more than one part: counted in largeWriters
	partBufs chan []byte
	uploads  sync.WaitGroup

	errMu  sync.Mutex
	err    error
	closed bool
}

type chunkJob struct {
	idx    int
	raw    []byte
	stored []byte
	ch     Chunk
	err    error
	direct bool // CompressionNone without a key: encoded by the assembler
	done   chan struct{}
}

// NewFileWriter starts writing the file stored at key (Layout.DataKeyV2).
func NewFileWriter(ctx context.Context, b uploader.BucketWriter, key string, opts WriterOptions) (*FileWriter, error) {
	switch opts.Compression {
	case "", CompressionAuto:
		opts.Compression = CompressionAuto
	case CompressionZstd, CompressionNone:
	default:
		return nil, fmt.Errorf("write %s: unknown compression %q", key, opts.Compression)
	}
	if opts.Level == 0 && opts.Compression == CompressionAuto {
		opts.Level = autoLevel
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.PartSize <= 0 {
		opts.PartSize = DefaultPartSize
	}
	opts.PartSize = max(opts.PartSize, uploader.MinPartSize)
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.PartBuffers < 1 {
		opts.PartBuffers = DefaultPartBuffers
	}
	codec := opts.Codec
	if codec == nil {
		codec = defaultCodec
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &FileWriter{
		ctx: ctx, cancel: cancel, b: b, key: key, opts: opts, codec: codec,
		sha:      sha256.New(),
		slots:    make(chan struct{}, opts.Workers),
		order:    make(chan *chunkJob, opts.Workers),
		asmDone:  make(chan struct{}),
		partBufs: make(chan []byte, opts.PartBuffers),
	}
	if opts.Compression != CompressionAuto {
		w.comp = opts.Compression
	}
	if h := opts.SizeHint; h <= 0 || h > int64(opts.PartSize) {
		w.large = true
		largeWriters.Add(1)
	}
	for range opts.PartBuffers {
		w.partBufs <- nil // allocated on first use
	}
	go w.assemble()
	return w, nil
}

func (w *FileWriter) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
		w.cancel()
	}
	w.errMu.Unlock()
}

func (w *FileWriter) failed() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// Write adds p to the file.
func (w *FileWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("write %s: after Close or Abort", w.key)
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	w.sha.Write(p)
	n := len(p)
	for len(p) > 0 {
		if err := w.startChunk(); err != nil {
			return n - len(p), err
		}
		k := min(len(p), w.opts.ChunkSize-len(w.raw))
		w.raw = append(w.raw, p[:k]...)
		p = p[k:]
		if len(w.raw) == w.opts.ChunkSize {
			if err := w.submit(); err != nil {
				return n - len(p), err
			}
		}
	}
	w.size += int64(n)
	return n, nil
}

// startChunk takes a chunk slot and a raw buffer when no chunk is being
// filled: a raw chunk holds a slot from its first byte.
func (w *FileWriter) startChunk() error {
	if w.raw != nil {
		return nil
	}
	select {
	case chunkSlots <- struct{}{}:
	case <-w.ctx.Done():
		return w.ctxErr()
	}
	w.raw = getBuf(rawBufs, w.bufSize(w.opts.ChunkSize))
	return nil
}

// ReadFrom adds everything r returns until EOF, reading straight into the
// chunk being filled (io.Copy uses it: one copy of each byte fewer than
// Write through a copy buffer).
func (w *FileWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, fmt.Errorf("write %s: after Close or Abort", w.key)
	}
	var total int64
	for {
		if err := w.failed(); err != nil {
			return total, err
		}
		if err := w.startChunk(); err != nil {
			return total, err
		}
		if len(w.raw) == cap(w.raw) { // a file larger than its SizeHint
			w.raw = slices.Grow(w.raw, min(max(cap(w.raw), 64<<10), w.opts.ChunkSize-len(w.raw)))
		}
		n, err := r.Read(w.raw[len(w.raw):min(cap(w.raw), w.opts.ChunkSize)])
		if n > 0 {
			w.sha.Write(w.raw[len(w.raw) : len(w.raw)+n])
			w.raw = w.raw[:len(w.raw)+n]
			w.size += int64(n)
			total += int64(n)
			if len(w.raw) == w.opts.ChunkSize {
				if serr := w.submit(); serr != nil {
					return total, serr
				}
			}
		}
		if err == io.EOF {
			if len(w.raw) == 0 {
				w.dropRaw() // nothing in it: Close must not see an empty chunk
			}
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// submit hands the filled chunk to an encoder and the assembler.
func (w *FileWriter) submit() error {
	raw := w.raw
	w.raw = nil
	select {
	case w.slots <- struct{}{}:
	case <-w.ctx.Done():
		putBuf(rawBufs, raw)
		<-chunkSlots
		return w.ctxErr()
	}
	j := &chunkJob{idx: w.nextI, raw: raw, done: make(chan struct{})}
	w.nextI++
	select {
	case w.order <- j:
	case <-w.ctx.Done():
		<-chunkSlots
		<-w.slots
		putBuf(rawBufs, raw)
		return w.ctxErr()
	}
	if w.comp == "" { // auto: chunk 0 decides, before any other chunk is encoded
		w.encode(j, CompressionZstd)
		if j.err == nil && float64(j.ch.StoredSize) > autoMaxRatio*float64(j.ch.RawSize) {
			w.comp = CompressionNone
			j.stored = j.stored[:0]
			w.encodeInto(j, CompressionNone)
		} else {
			w.comp = CompressionZstd
		}
		w.finishJob(j)
		return nil
	}
	comp := w.comp
	if comp == CompressionNone && w.opts.Key == nil {
		// Stored as it is: the assembler appends the raw bytes to the part
		// (EncodeChunk computes the CRCs there), no second buffer.
		j.direct = true
		close(j.done)
		return nil
	}
	go func() {
		w.encode(j, comp)
		w.finishJob(j)
	}()
	return nil
}

func (w *FileWriter) ctxErr() error {
	if err := w.failed(); err != nil {
		return err
	}
	return fmt.Errorf("write %s: %w", w.key, w.ctx.Err())
}

func (w *FileWriter) encode(j *chunkJob, comp string) {
	// Sized for the worst case up front: zstd grows a short buffer by
	// doubling, which made each chunk cost several times its size.
	j.stored = getBuf(storedBufs, w.bufSize(storedCap(w.opts.ChunkSize)))
	w.encodeInto(j, comp)
}

// storedCap is the most a chunk of raw bytes stores as (zstd's bound of an
// incompressible block plus the encryption's overhead, rounded up).
func storedCap(raw int) int { return raw + raw>>7 + 64<<10 }

// rawBufs, storedBufs and partBufPool are free lists of chunk and part
// buffers shared by all writers. Unlike a sync.Pool they survive garbage
// collections, so a long archive run allocates its buffers once and makes
// no garbage per chunk: the process's RSS stays at its working set instead
// of growing to twice it between collections. Each keeps a few buffers
// (about one large writer's set); more are dropped. Only buffers of a
// pool's full size are pooled: with WriterOptions.SizeHint a small file
// allocates a buffer of its size, outside the pools (a small buffer in a
// pool made the next large writer drop it and allocate, and a small file
// holding a full-size one made a large writer allocate another: garbage
// that doubled the heap between collections).
var (
	rawBufs     = bufPool{c: make(chan []byte, runtime.GOMAXPROCS(0)+2), size: DefaultChunkSize}
	storedBufs  = bufPool{c: make(chan []byte, runtime.GOMAXPROCS(0)+1), size: storedCap(DefaultChunkSize)}
	partBufPool = bufPool{c: make(chan []byte, 2), size: DefaultPartSize}
	// sharedParts holds the SharedPartBuffers (nil until first used).
	sharedParts = func() chan []byte {
		c := make(chan []byte, SharedPartBuffers)
		for range SharedPartBuffers {
			c <- nil
		}
		return c
	}()
	// chunkSlots bounds the chunks alive (taken when a chunk starts
	// filling, given back when the assembler has put it into a part) over
	// all writers: the raw and encoded chunk memory of the process, one
	// filling and GOMAXPROCS encoding. A slot never waits on another
	// writer to be given back, so it cannot deadlock.
	chunkSlots = make(chan struct{}, runtime.GOMAXPROCS(0)+1)
	// largeWriters counts the writers of more than one part at work.
	largeWriters atomic.Int64
)

// bufPool is a free list of buffers of at least size bytes.
type bufPool struct {
	c    chan []byte
	size int
}

// getBuf returns an empty buffer of capacity >= want: a pooled one when
// want is the pool's size (or close to it), else a new one.
func getBuf(p bufPool, want int) []byte {
	if want >= p.size/2 && want <= p.size {
		select {
		case b := <-p.c:
			if cap(b) >= want {
				return b[:0]
			}
		default:
		}
		want = p.size
	}
	return make([]byte, 0, want)
}

// putBuf gives b back to p when it is of p's size; others are dropped.
func putBuf(p bufPool, b []byte) {
	if cap(b) < p.size || cap(b) > 2*DefaultPartSize {
		return
	}
	select {
	case p.c <- b[:0]:
	default:
	}
}

func (w *FileWriter) encodeInto(j *chunkJob, comp string) {
	var err error
	j.stored, j.ch, err = w.codec.EncodeChunk(j.stored, j.raw, comp, w.opts.Level, w.opts.Key)
	if err != nil {
		j.err = fmt.Errorf("write %s: chunk %d: %w", w.key, j.idx, err)
	}
}

func (w *FileWriter) finishJob(j *chunkJob) {
	putBuf(rawBufs, j.raw)
	j.raw = nil
	close(j.done)
}

// release returns a job's buffers to their pools and its chunk slot
// (assembler, once per job).
func (w *FileWriter) release(j *chunkJob) {
	if j.raw != nil {
		putBuf(rawBufs, j.raw)
		j.raw = nil
	}
	if j.stored != nil {
		putBuf(storedBufs, j.stored)
		j.stored = nil
	}
	<-chunkSlots
}

// assemble groups encoded chunks, in order, into parts and uploads them.
func (w *FileWriter) assemble() {
	defer close(w.asmDone)
	for j := range w.order {
		select {
		case <-j.done:
		case <-w.ctx.Done():
			<-j.done // encoders always finish; their buffers return to the pool
		}
		// The chunk's slot is given back with its buffers (release), not
		// before: while this goroutine waits for a part buffer it holds the
		// encoded chunk, and a slot given back early let another chunk
		// take a new buffer beside it (more buffers alive than slots, the
		// extra ones dropped by the full free lists: garbage).
		<-w.slots
		if j.err != nil {
			w.fail(j.err)
		}
		if w.failed() != nil || w.ctx.Err() != nil {
			w.release(j)
			continue
		}
		storedLen := len(j.stored)
		if j.direct {
			storedLen = len(j.raw)
		}
		// A part is flushed before it would pass PartSize (once it holds
		// MinPartSize), so part buffers never grow past PartSize.
		if w.cur != nil && len(w.cur)+storedLen > w.opts.PartSize && len(w.cur) >= uploader.MinPartSize {
			w.flush()
		}
		if w.cur == nil {
			// A small file (one part) uses its own buffer only; a larger
			// one borrows a shared buffer when its own is uploading.
			// Only while it is the only large writer: with two or more,
			// one uploads while another fills, and the process keeps the
			// memory of one part per writer.
			var shared chan []byte
			if w.large && largeWriters.Load() == 1 {
				shared = sharedParts
			}
			var buf []byte
			got, shr := false, false
			select { // its own first: the shared ones stay for the others
			case buf = <-w.partBufs:
				got = true
			default:
			}
			if !got {
				select {
				case buf = <-w.partBufs:
				case buf = <-shared:
					shr = true
				case <-w.ctx.Done():
					w.release(j)
					continue
				}
			}
			switch {
			case shr && cap(buf) < w.opts.PartSize:
				buf = make([]byte, 0, w.opts.PartSize)
			case buf == nil:
				buf = getBuf(partBufPool, w.bufSize(w.opts.PartSize))
			}
			w.cur, w.curShr = buf[:0], shr
		}
		if j.direct {
			var err error
			if w.cur, j.ch, err = w.codec.EncodeChunk(w.cur, j.raw, CompressionNone, 0, nil); err != nil {
				w.fail(fmt.Errorf("write %s: chunk %d: %w", w.key, j.idx, err))
			}
		} else {
			w.cur = append(w.cur, j.stored...)
		}
		j.ch.Offset = w.objOff
		w.objOff += j.ch.StoredSize
		w.chunks = append(w.chunks, j.ch)
		w.release(j)
	}
	if w.failed() == nil && w.ctx.Err() == nil && len(w.cur) > 0 {
		if w.stream == nil {
			w.single = w.cur // a one-part file: one Create in Close
			w.cur = nil
		} else {
			w.flush()
		}
	}
	if w.cur != nil {
		w.giveBack(w.cur, w.curShr)
		w.cur = nil
	}
}

// giveBack returns a part buffer to where it came from.
func (w *FileWriter) giveBack(part []byte, shared bool) {
	if shared {
		sharedParts <- part[:0]
	} else {
		w.partBufs <- part
	}
}

// flush uploads the current part (assembler goroutine).
func (w *FileWriter) flush() {
	part, shared := w.cur, w.curShr
	w.cur = nil
	if w.stream == nil {
		st, err := uploader.CreateStream(w.ctx, w.b, w.key, uploader.PutOptions{ContentType: w.opts.ContentType, Metadata: w.opts.Metadata})
		if err != nil {
			w.fail(fmt.Errorf("write %s: %w", w.key, err))
			w.giveBack(part, shared)
			return
		}
		w.stream = st
	}
	w.partN++
	n := w.partN
	w.uploads.Add(1)
	go func() {
		defer w.uploads.Done()
		crc := formatCRC(crc32.Checksum(part, castagnoli))
		if err := w.stream.WritePart(w.ctx, n, part, crc); err != nil {
			w.fail(fmt.Errorf("write %s: part %d: %w", w.key, n, err))
		}
		w.giveBack(part, shared)
	}()
}

// drain stops taking chunks and waits for every goroutine.
func (w *FileWriter) drain() {
	close(w.order)
	<-w.asmDone
	w.uploads.Wait()
	if w.large {
		largeWriters.Add(-1)
		w.large = false
	}
	for range len(w.partBufs) {
		putBuf(partBufPool, <-w.partBufs)
	}
}

// Close stores the last chunk, waits for every part, completes the upload
// and returns the file's v2 record. On any failure nothing is left at the
// key.
func (w *FileWriter) Close() (FileRecord, error) {
	if w.closed {
		return FileRecord{}, fmt.Errorf("write %s: Close after Close or Abort", w.key)
	}
	if len(w.raw) > 0 && w.failed() == nil {
		if err := w.submit(); err != nil {
			w.fail(err)
		}
	}
	w.dropRaw()
	w.closed = true
	w.drain()
	defer w.cancel()
	defer func() { // a one-part file that failed: its buffer goes back
		if w.single != nil && w.curShr {
			sharedParts <- w.single[:0]
		} else if w.single != nil {
			putBuf(partBufPool, w.single)
		}
		w.single = nil
	}()
	if err := w.failed(); err != nil {
		w.abortStream()
		return FileRecord{}, err
	}
	if err := w.ctx.Err(); err != nil {
		w.abortStream()
		return FileRecord{}, fmt.Errorf("write %s: %w", w.key, err)
	}
	rec := FileRecord{Name: w.opts.Name, Size: w.size, SHA256: hex.EncodeToString(w.sha.Sum(nil)), ModTime: w.opts.ModTime,
		DataKey: w.key, Chunks: w.chunks}
	switch {
	case w.stream != nil:
		if err := w.stream.Complete(w.ctx); err != nil {
			w.abortStream()
			return FileRecord{}, fmt.Errorf("write %s: %w", w.key, err)
		}
	case len(w.single) > 0:
		body := w.single
		w.single = nil
		crc := formatCRC(crc32.Checksum(body, castagnoli))
		err := w.b.Create(w.ctx, w.key, bytes.NewReader(body), int64(len(body)),
			uploader.PutOptions{CRC32C: crc, ContentType: w.opts.ContentType, Metadata: w.opts.Metadata})
		if w.curShr {
			sharedParts <- body[:0]
		} else {
			putBuf(partBufPool, body)
		}
		if err != nil {
			return FileRecord{}, fmt.Errorf("write %s: %w", w.key, err)
		}
	}
	return rec, nil
}

func (w *FileWriter) abortStream() {
	if w.stream != nil {
		_ = w.stream.Abort(context.WithoutCancel(w.ctx))
	}
}

// dropRaw frees a chunk that was never submitted, and its slot.
func (w *FileWriter) dropRaw() {
	if w.raw != nil {
		putBuf(rawBufs, w.raw)
		w.raw = nil
		<-chunkSlots
	}
}

// Abort discards the upload; nothing is left at the key.
func (w *FileWriter) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.fail(fmt.Errorf("write %s: %w", w.key, errAborted))
	w.drain()
	w.dropRaw()
	w.abortStream()
	return nil
}

var errAborted = errors.New("aborted")
