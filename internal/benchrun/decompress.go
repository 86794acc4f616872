package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/segvault/segvault/segment"
)

// v2HeaderSize is a v2 batch's header, from baseOffset to recordsCount;
// the records (compressed or not) follow it.
const v2HeaderSize = 61

var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// decompressOnly is the second reference for deep verification: walk the
// batches (shallow Reader) and only decompress each batch's records with
// the same libraries segment uses, parsing nothing. It returns the bytes
// the batches decompress to.
func decompressOnly(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	var (
		out  int64
		buf  []byte
		src  bytes.Reader
		gz   *gzip.Reader
		lz   = lz4.NewReader(nil)
		zs   *zstd.Decoder
		sink = make([]byte, 256<<10)
	)
	drain := func(r io.Reader) (int64, error) {
		var n int64
		for {
			k, err := r.Read(sink)
			n += int64(k)
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return n, err
			}
		}
	}
	r := segment.NewReader(f, fi.Size(), path, segment.ReaderOptions{BaseOffset: 0})
	for r.Next() {
		raw := r.Raw()
		if len(raw) < v2HeaderSize {
			return out, fmt.Errorf("short batch")
		}
		payload := raw[v2HeaderSize:]
		var n int64
		switch r.Batch().Codec() {
		case segment.CodecNone:
			n = int64(len(payload))
		case segment.CodecGzip:
			src.Reset(payload)
			if gz == nil {
				gz, err = gzip.NewReader(&src)
			} else {
				err = gz.Reset(&src)
			}
			if err == nil {
				n, err = drain(gz)
			}
		case segment.CodecLZ4:
			src.Reset(payload)
			lz.Reset(&src)
			n, err = drain(lz)
		case segment.CodecZstd:
			if zs == nil {
				if zs, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
					return out, err
				}
			}
			buf, err = zs.DecodeAll(payload, buf[:0])
			n = int64(len(buf))
		case segment.CodecSnappy:
			n, buf, err = snappyAll(payload, buf)
		}
		if err != nil {
			return out, fmt.Errorf("batch at %d: %w", r.Batch().Pos, err)
		}
		out += n
	}
	if zs != nil {
		zs.Close()
	}
	return out, r.Err()
}

// snappyAll decodes a raw snappy block or snappy-java's xerial framing.
func snappyAll(p, buf []byte) (int64, []byte, error) {
	if !bytes.HasPrefix(p, xerialMagic) {
		out, err := snappy.Decode(buf[:cap(buf)], p)
		return int64(len(out)), out, err
	}
	var n int64
	p = p[16:]
	for len(p) >= 4 {
		l := int(binary.BigEndian.Uint32(p))
		if l > len(p)-4 {
			return n, buf, io.ErrUnexpectedEOF
		}
		out, err := snappy.Decode(buf[:cap(buf)], p[4:4+l])
		if err != nil {
			return n, buf, err
		}
		buf = out
		n += int64(len(out))
		p = p[4+l:]
	}
	return n, buf, nil
}
