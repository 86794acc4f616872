package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/segvault/segvault/uploader"
)

// Reader limits of OpenFile for v2 records.
const (
	// rangeTarget bounds one ranged GET: adjacent chunks of one object are
	// fetched together up to this many stored (and raw) bytes.
	rangeTarget = 16 << 20
	// rangesInFlight is how many ranges are fetched ahead of the reader.
	rangesInFlight = 3
	// maxChunkRaw bounds a chunk's raw size as a manifest may claim it, so a
	// hostile manifest cannot make the reader allocate without limit.
	maxChunkRaw = 64 << 20
	// rangeAttempts: a range whose body fails mid-way is fetched again.
	rangeAttempts = 3
)

// OpenFile streams back the raw file rec describes, for either format: v1
// records go to OpenVerified; v2 records are read as chunks with ranged GETs
// (adjacent chunks of one object coalesced into ranges of about 16 MiB, a
// few ranges in flight), decoded in parallel and delivered in order. Each
// chunk's stored and raw CRC-32C are checked as it is decoded, and the
// file's raw size and SHA-256 (computed once, as bytes are delivered) at
// the end: on any mismatch the Read that would return io.EOF returns an
// *IntegrityError instead. Chunks naming another object (tail packs) are
// read from it the same way. Transport errors are returned as they are.
func OpenFile(ctx context.Context, b uploader.BucketReader, rec FileRecord, opts DecodeOptions) (io.ReadCloser, error) {
	if !rec.IsV2() {
		return OpenVerified(ctx, b, rec, opts)
	}
	ranges, err := planRanges(rec)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &v2Reader{
		ctx: ctx, cancel: cancel, b: b, rec: rec, opts: opts,
		queue: make(chan *rangeJob, rangesInFlight-1),
		dec:   make(chan struct{}, runtime.GOMAXPROCS(0)),
		sha:   sha256.New(),
	}
	r.wg.Add(1)
	go r.produce(ranges)
	return r, nil
}

// rangeJob is one ranged GET of consecutive chunks of one object.
type rangeJob struct {
	key    string
	off, n int64
	first  int // index of chunks[0] in the record
	chunks []Chunk
	raws   [][]byte
	err    error
	done   chan struct{}
}

// planRanges checks the record's chunk table and groups it into ranges.
func planRanges(rec FileRecord) ([]*rangeJob, error) {
	bad := func(i int, what string) error {
		return &IntegrityError{Key: rec.DataKey, Check: "chunk table", Err: fmt.Errorf("file %s chunk %d: %s", rec.Name, i, what)}
	}
	var total int64
	var out []*rangeJob
	var cur *rangeJob
	for i, ch := range rec.Chunks {
		if ch.RawSize <= 0 || ch.RawSize > maxChunkRaw || ch.StoredSize <= 0 || ch.StoredSize > 2*maxChunkRaw || ch.Offset < 0 {
			return nil, bad(i, fmt.Sprintf("sizes raw %d stored %d at offset %d out of range", ch.RawSize, ch.StoredSize, ch.Offset))
		}
		total += ch.RawSize
		key := ch.Key
		if key == "" {
			key = rec.DataKey
		}
		if cur != nil && cur.key == key && cur.off+cur.n == ch.Offset && cur.n+ch.StoredSize <= rangeTarget &&
			rawSum(cur.chunks)+ch.RawSize <= rangeTarget {
			cur.n += ch.StoredSize
			cur.chunks = append(cur.chunks, ch)
			continue
		}
		cur = &rangeJob{key: key, off: ch.Offset, n: ch.StoredSize, first: i, chunks: []Chunk{ch}}
		out = append(out, cur)
	}
	if total != rec.Size {
		return nil, &IntegrityError{Key: rec.DataKey, Check: "chunk raw sizes", Recorded: fmt.Sprint(rec.Size), Computed: fmt.Sprint(total)}
	}
	return out, nil
}

func rawSum(cs []Chunk) int64 {
	var n int64
	for _, c := range cs {
		n += c.RawSize
	}
	return n
}

type v2Reader struct {
	ctx    context.Context
	cancel context.CancelFunc
	b      uploader.BucketReader
	rec    FileRecord
	opts   DecodeOptions
	queue  chan *rangeJob
	dec    chan struct{} // decode slots
	wg     sync.WaitGroup

	cur    *rangeJob
	ci     int // chunk of cur being delivered
	pos    int // position in it
	sha    hash.Hash
	n      int64
	err    error
	closed bool
}

func (r *v2Reader) produce(ranges []*rangeJob) {
	defer r.wg.Done()
	defer close(r.queue)
	for _, j := range ranges {
		j.done = make(chan struct{})
		select {
		case r.queue <- j:
		case <-r.ctx.Done():
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(j.done)
			j.err = r.fetch(j)
		}()
	}
}

var chunkBufs = sync.Pool{New: func() any { return make([]byte, 0, DefaultChunkSize+1) }}

// fetch reads j's stored bytes and decodes its chunks in parallel.
func (r *v2Reader) fetch(j *rangeJob) error {
	var stored []byte
	var err error
	for attempt := 1; attempt <= rangeAttempts; attempt++ {
		stored, err = r.get(j)
		if err == nil || !uploader.IsTransient(err) || r.ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return err
	}
	j.raws = make([][]byte, len(j.chunks))
	errs := make([]error, len(j.chunks))
	var wg sync.WaitGroup
	var off int64
	for i, ch := range j.chunks {
		part := stored[off : off+ch.StoredSize]
		off += ch.StoredSize
		select {
		case r.dec <- struct{}{}:
		case <-r.ctx.Done():
			wg.Wait()
			return r.ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-r.dec }()
			var dst []byte
			if ch.RawSize <= DefaultChunkSize {
				dst = chunkBufs.Get().([]byte)[:0]
			}
			where := fmt.Sprintf("%s (file %s chunk %d at offset %d)", j.key, r.rec.Name, j.first+i, ch.Offset)
			j.raws[i], errs[i] = defaultCodec.DecodeChunk(dst, part, ch, r.opts.Keys, where)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *v2Reader) get(j *rangeJob) ([]byte, error) {
	rc, err := uploader.GetRange(r.ctx, r.b, j.key, j.off, j.n)
	if errors.Is(err, uploader.ErrRangeEnd) {
		return nil, &IntegrityError{Key: j.key, Check: "stored size", Err: fmt.Errorf("file %s chunk %d: %w", r.rec.Name, j.first, err)}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", j.key, err)
	}
	defer rc.Close()
	buf := make([]byte, j.n)
	if _, err := io.ReadFull(rc, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s at %d (%d bytes): %w", j.key, j.off, j.n, err)
	}
	return buf, nil
}

func (r *v2Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for r.cur == nil || r.ci >= len(r.cur.raws) {
		if r.cur != nil {
			r.cur = nil
		}
		j, ok := <-r.queue
		if !ok {
			r.err = r.finish()
			return 0, r.err
		}
		<-j.done
		if j.err != nil {
			r.err = j.err
			r.cancel()
			return 0, r.err
		}
		r.cur, r.ci, r.pos = j, 0, 0
	}
	raw := r.cur.raws[r.ci]
	n := copy(p, raw[r.pos:])
	r.sha.Write(p[:n])
	r.n += int64(n)
	r.pos += n
	if r.pos == len(raw) {
		if cap(raw) == DefaultChunkSize+1 {
			chunkBufs.Put(raw[:0])
		}
		r.cur.raws[r.ci] = nil
		r.ci++
		r.pos = 0
	}
	return n, nil
}

func (r *v2Reader) finish() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.n != r.rec.Size {
		return &IntegrityError{Key: r.rec.DataKey, Check: "raw size", Recorded: fmt.Sprint(r.rec.Size), Computed: fmt.Sprint(r.n)}
	}
	if got := hex.EncodeToString(r.sha.Sum(nil)); got != r.rec.SHA256 {
		return &IntegrityError{Key: r.rec.DataKey, Check: "raw sha256", Recorded: r.rec.SHA256, Computed: got}
	}
	return io.EOF
}

// Close stops the fetches and waits for them.
func (r *v2Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.cancel()
	for range r.queue { // unblock and drain the producer
	}
	r.wg.Wait()
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return nil
}
