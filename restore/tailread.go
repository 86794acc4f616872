package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// isTailRecord reports whether rec is the .log of a segment planned from
// tail captures: a v2 record named by a tail manifest key, every chunk in a
// tail pack.
func isTailRecord(rec archive.FileRecord) bool {
	return rec.IsV2() && strings.Contains(rec.DataKey, "/tails/") && strings.HasSuffix(rec.DataKey, ".json")
}

// tailPrefetch is how many chunks are fetched and decoded ahead.
const tailPrefetch = 8

// openTailRecord streams the captured bytes of rec back: each chunk read
// with a ranged GET from its pack and decoded (size and CRC-32C checked),
// a few ahead, delivered in order; the Read that would return io.EOF checks
// the total size and the chain's final SHA-256 and returns an
// *archive.IntegrityError instead on a mismatch.
func openTailRecord(ctx context.Context, b uploader.BucketReader, rec archive.FileRecord, keys []*archive.Key) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	r := &tailReader{rec: rec, sha: sha256.New(), cancel: cancel, results: make(chan chan tailChunk, tailPrefetch)}
	go func() {
		defer close(r.results)
		codec := archive.NewChunkCodec()
		var raw int64
		for i, ch := range rec.Chunks {
			out := make(chan tailChunk, 1)
			select {
			case r.results <- out:
			case <-ctx.Done():
				return
			}
			where := fmt.Sprintf("%s chunk %d (bytes %d..%d of %s, chain of %s)", ch.Key, i, raw, raw+ch.RawSize, rec.Name, rec.DataKey)
			raw += ch.RawSize
			go func() {
				data, err := fetchTailChunk(ctx, b, codec, ch, keys, where)
				out <- tailChunk{data: data, err: err}
			}()
		}
	}()
	return r
}

type tailChunk struct {
	data []byte
	err  error
}

func fetchTailChunk(ctx context.Context, b uploader.BucketReader, codec *archive.ChunkCodec, ch archive.Chunk, keys []*archive.Key, where string) ([]byte, error) {
	if ch.RawSize > archive.DefaultChunkSize*4 || ch.StoredSize > archive.DefaultChunkSize*4+1<<20 {
		return nil, &archive.IntegrityError{Key: where, Check: "chunk size", Recorded: fmt.Sprint(ch.RawSize), Computed: "over the chunk size limit"}
	}
	rc, err := uploader.GetRange(ctx, b, ch.Key, ch.Offset, ch.StoredSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer rc.Close()
	stored, err := io.ReadAll(io.LimitReader(rc, ch.StoredSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return codec.DecodeChunk(nil, stored, ch, keys, where)
}

type tailReader struct {
	rec     archive.FileRecord
	sha     hash.Hash
	n       int64
	cancel  context.CancelFunc
	results chan chan tailChunk
	cur     []byte
	err     error
}

func (r *tailReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		next, ok := <-r.results
		if !ok {
			r.err = r.finish()
			return 0, r.err
		}
		c := <-next
		if c.err != nil {
			r.err = c.err
			return 0, r.err
		}
		r.cur = c.data
		r.sha.Write(c.data)
		r.n += int64(len(c.data))
		if r.n > r.rec.Size {
			r.err = &archive.IntegrityError{Key: r.rec.DataKey, Check: "raw size", Recorded: fmt.Sprint(r.rec.Size), Computed: fmt.Sprintf("more than %d", r.rec.Size)}
			return 0, r.err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// finish checks the whole chain at its end.
func (r *tailReader) finish() error {
	if r.n != r.rec.Size {
		return &archive.IntegrityError{Key: r.rec.DataKey, Check: "raw size", Recorded: fmt.Sprint(r.rec.Size), Computed: fmt.Sprint(r.n)}
	}
	if got := hex.EncodeToString(r.sha.Sum(nil)); got != r.rec.SHA256 {
		return &archive.IntegrityError{Key: r.rec.DataKey, Check: "tail capture chain sha256", Recorded: r.rec.SHA256, Computed: got}
	}
	return io.EOF
}

func (r *tailReader) Close() error {
	r.cancel()
	go func() { // let the fetches end
		for next := range r.results {
			<-next
		}
	}()
	return nil
}
