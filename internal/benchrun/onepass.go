package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/segvault/segvault/archive"
)

// The one-pass floor is the least work any archiver of format v2 does on
// the CPU: read every byte once, CRC-32C it (the per-chunk check), SHA-256
// it (the whole-file digest) and compress it with zstd at its fastest
// level, one independent frame per archive.DefaultChunkSize chunk, on one
// goroutine, with the "auto" rule of the v2 spec (if chunk 0 stores more
// than 90% of its raw size, the file's other chunks are stored as they
// are). No validation of Kafka's batches, no upload, no manifest: the
// agent's CPU time divided by this floor's is what the rest costs.

// onePassFloor holds one encoder and the buffers, reused across files.
type onePassFloor struct {
	enc   *zstd.Encoder
	buf   []byte
	dst   []byte
	sha   hash.Hash
	chunk int
}

func newOnePassFloor() (*onePassFloor, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	chunk := int(archive.DefaultChunkSize)
	return &onePassFloor{enc: enc, buf: make([]byte, chunk), dst: make([]byte, 0, chunk+chunk/8), sha: sha256.New(), chunk: chunk}, nil
}

// onePassResult is what the floor did to one or more files.
type onePassResult struct {
	Raw    int64 // bytes read, CRC-32C'd and SHA-256'd
	Zstd   int64 // raw bytes that went through zstd
	Stored int64 // the stored size: compressed chunks plus chunks kept as they are
}

func (r *onePassResult) add(o onePassResult) {
	r.Raw += o.Raw
	r.Zstd += o.Zstd
	r.Stored += o.Stored
}

// file runs the floor over one file. auto applies the v2 "auto" rule;
// without it every chunk is compressed.
func (p *onePassFloor) file(path string, auto bool) (onePassResult, error) {
	var res onePassResult
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	p.sha.Reset()
	compress := true
	for i := 0; ; i++ {
		n, err := io.ReadFull(f, p.buf)
		if n > 0 {
			raw := p.buf[:n]
			_ = crc32.Checksum(raw, castagnoli)
			p.sha.Write(raw)
			stored := int64(n)
			if compress {
				p.dst = p.enc.EncodeAll(raw, p.dst[:0])
				res.Zstd += int64(n)
				stored = int64(len(p.dst))
				if auto && i == 0 && stored*10 > int64(n)*9 {
					compress = false // stored as-is: chunk 0 and the rest
				}
				if !compress {
					stored = int64(n)
				}
			}
			res.Raw += int64(n)
			res.Stored += stored
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("%s: read at byte %d: %w", path, res.Raw, err)
		}
	}
	_ = p.sha.Sum(nil)
	return res, nil
}

// files runs the floor over every file, one after the other.
func (p *onePassFloor) files(paths []string, auto bool) (onePassResult, error) {
	var total onePassResult
	for _, path := range paths {
		r, err := p.file(path, auto)
		total.add(r)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
