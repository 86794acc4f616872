package uploader

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// WithRateLimit limits the bytes b's Creates read from their bodies to
// bytesPerSec, shared by all concurrent Creates through the returned Bucket
// (upload bandwidth). Reads are not limited. bytesPerSec <= 0 returns b.
// A body that is an io.Seeker or io.ReaderAt stays one, so WithRetry and
// parallel multipart uploads keep working.
func WithRateLimit(b Bucket, bytesPerSec int64) Bucket {
	if bytesPerSec <= 0 {
		return b
	}
	burst := min(max(bytesPerSec/8, 16<<10), 1<<20)
	burst = min(burst, bytesPerSec) // WaitN never asks for more than the burst
	return &rateBucket{Bucket: b, lim: rate.NewLimiter(rate.Limit(bytesPerSec), int(burst)), burst: int(burst)}
}

type rateBucket struct {
	Bucket
	lim   *rate.Limiter
	burst int
}

func (r *rateBucket) Create(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	rl := &rateReader{ctx: ctx, r: body, lim: r.lim, burst: r.burst}
	var wrapped io.Reader = rl
	rs, seeker := body.(io.Seeker)
	ra, readerAt := body.(io.ReaderAt)
	switch {
	case seeker && readerAt:
		wrapped = &rateReadSeekerAt{rateReader: rl, s: rs, ra: ra}
	case seeker:
		wrapped = &rateReadSeeker{rateReader: rl, s: rs}
	case readerAt:
		wrapped = &rateReaderAt{rateReader: rl, ra: ra}
	}
	return r.Bucket.Create(ctx, key, wrapped, size, opts)
}

type rateReader struct {
	ctx   context.Context
	r     io.Reader
	lim   *rate.Limiter
	burst int
}

func (r *rateReader) Read(p []byte) (int, error) {
	if len(p) > r.burst {
		p = p[:r.burst]
	}
	n, err := r.r.Read(p)
	if n > 0 {
		if werr := r.lim.WaitN(r.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (r *rateReader) readAt(ra io.ReaderAt, p []byte, off int64) (int, error) {
	total := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), r.burst)]
		n, err := ra.ReadAt(chunk, off)
		if n > 0 {
			if werr := r.lim.WaitN(r.ctx, n); werr != nil {
				return total + n, werr
			}
		}
		total += n
		off += int64(n)
		p = p[n:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

type rateReadSeeker struct {
	*rateReader
	s io.Seeker
}

func (r *rateReadSeeker) Seek(off int64, whence int) (int64, error) { return r.s.Seek(off, whence) }

type rateReaderAt struct {
	*rateReader
	ra io.ReaderAt
}

func (r *rateReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.readAt(r.ra, p, off) }

type rateReadSeekerAt struct {
	*rateReader
	s  io.Seeker
	ra io.ReaderAt
}

func (r *rateReadSeekerAt) Seek(off int64, whence int) (int64, error) { return r.s.Seek(off, whence) }
func (r *rateReadSeekerAt) ReadAt(p []byte, off int64) (int, error)   { return r.readAt(r.ra, p, off) }

// CreateStream limits the parts' bytes with the same limiter as Create.
func (r *rateBucket) CreateStream(ctx context.Context, key string, opts PutOptions) (ObjectStream, error) {
	st, err := CreateStream(ctx, r.Bucket, key, opts)
	if err != nil {
		return nil, err
	}
	return &rateStream{ObjectStream: st, r: r}, nil
}

type rateStream struct {
	ObjectStream
	r *rateBucket
}

func (s *rateStream) WritePart(ctx context.Context, n int, data []byte, crc32c string) error {
	for left := len(data); left > 0; {
		k := min(left, s.r.burst)
		if err := s.r.lim.WaitN(ctx, k); err != nil {
			return err
		}
		left -= k
	}
	return s.ObjectStream.WritePart(ctx, n, data, crc32c)
}

// GetRange is not limited (reads are not).
func (r *rateBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return GetRange(ctx, r.Bucket, key, off, n)
}
