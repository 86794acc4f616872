package segment

import (
	"bytes"
	"encoding/binary"
	"io"
	"path/filepath"
	"testing"
)

// Benchmarks run over two kinds of real data: a real broker's
// __consumer_offsets segment (8202 small batches, ~130 bytes each) repeated
// to 8 MiB with shifted offsets, and a real client's segment (franz-go,
// 100-record batches). BenchmarkFloorCRC32C reads the same bytes and
// CRC-32Cs them, the least any checker must do, so ratios can be quoted.

// benchSmallBatches is the William0423 __consumer_offsets-28 segment repeated
// to at least 8 MiB; later copies get their base offsets shifted (a field
// outside the CRC) so the result is a valid segment.
func benchSmallBatches(b *testing.B) []byte {
	one := readFile(b, filepath.Join(fixtureRoot, "William0423__kafka/kafka-logs/__consumer_offsets-28/00000000000000000000.log"))
	bs := layout(b, one, 0)
	span := bs[len(bs)-1].last + 1
	var out []byte
	for rep := int64(0); len(out) < 8<<20; rep++ {
		start := len(out)
		out = append(out, one...)
		for _, x := range bs {
			p := start + int(x.pos)
			binary.BigEndian.PutUint64(out[p:], uint64(x.base+rep*span))
		}
	}
	return out
}

// benchClientSegment produces ~4 MiB of records with codec through a real
// client and returns the fetched segment.
func benchClientSegment(b *testing.B, cc int) []byte {
	k := newKfakeRun(b, clientCodecs[cc].codec)
	cl := k.client()
	for range 100 {
		k.produce(cl, k.makeRecords(100), false)
	}
	seg := k.fetchSegment(cl)
	if _, err := scanBytes(seg, 0, true); err != nil {
		b.Fatal(err)
	}
	return seg
}

type benchData struct {
	name string
	data func(b *testing.B) []byte
}

var benchInputs = []benchData{
	{"broker-small-batches", benchSmallBatches},
	{"client-100-record-batches", func(b *testing.B) []byte { return benchClientSegment(b, 0) }},
}

// BenchmarkShallow: Scan without Deep (headers, lengths, CRCs, offsets).
func BenchmarkShallow(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			data := in.data(b)
			rd := bytes.NewReader(data)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			var batches int64
			for range b.N {
				rd.Reset(data)
				s, err := Scan(rd, int64(len(data)), "bench.log", ScanOptions{ReaderOptions: ReaderOptions{BaseOffset: 0}})
				if err != nil {
					b.Fatal(err)
				}
				batches = s.Batches
			}
			b.ReportMetric(float64(batches), "batches/op")
		})
	}
}

// BenchmarkReaderShallow: the bare Reader loop, which is what allocates
// nothing per batch (Scan adds the Summary's maps and slices).
func BenchmarkReaderShallow(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			data := in.data(b)
			rd := bytes.NewReader(data)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				rd.Reset(data)
				r := NewReader(rd, int64(len(data)), "bench.log", ReaderOptions{BaseOffset: 0})
				for r.Next() {
				}
				if r.Err() != nil {
					b.Fatal(r.Err())
				}
			}
		})
	}
}

// BenchmarkFloorCRC32C reads the same bytes through the same 1 MiB buffer
// size and CRC-32Cs all of them: the floor for any shallow check.
func BenchmarkFloorCRC32C(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			data := in.data(b)
			rd := bytes.NewReader(data)
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			var sum uint32
			for range b.N {
				rd.Reset(data)
				for {
					n, err := rd.Read(buf)
					sum ^= CRC32C(buf[:n])
					if err == io.EOF {
						break
					}
				}
			}
			_ = sum
		})
	}
}

// BenchmarkDeep: Scan with Deep, per codec, over a real client's segment.
// Throughput is in segment (compressed) bytes.
func BenchmarkDeep(b *testing.B) {
	for i, cc := range clientCodecs {
		b.Run(cc.name, func(b *testing.B) {
			data := benchClientSegment(b, i)
			plain := uncompressedSize(b, data)
			rd := bytes.NewReader(data)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			var recs int64
			for range b.N {
				rd.Reset(data)
				s, err := Scan(rd, int64(len(data)), "bench.log", ScanOptions{ReaderOptions: ReaderOptions{BaseOffset: 0}, Deep: true})
				if err != nil {
					b.Fatal(err)
				}
				recs = s.Records
			}
			b.ReportMetric(float64(recs), "records/op")
			b.ReportMetric(float64(plain)*float64(b.N)/b.Elapsed().Seconds()/1e6, "uncompressed-MB/s")
		})
	}
}

// uncompressedSize is the segment's size with every batch's records
// decompressed: the bytes the deep path really parses.
func uncompressedSize(b *testing.B, data []byte) int64 {
	r := NewReader(bytes.NewReader(data), int64(len(data)), "x.log", ReaderOptions{BaseOffset: 0})
	var n int64
	d := newRecordDecoder(DefaultMaxDecompressedSize)
	for r.Next() {
		bt := r.Batch()
		n += V2HeaderSize
		if bt.Codec() == CodecNone {
			n += int64(len(r.Raw()) - V2HeaderSize)
			continue
		}
		out, err := d.decompress(bt.Codec(), r.Raw()[V2HeaderSize:], false)
		if err != nil {
			b.Fatal(err)
		}
		n += int64(len(out))
	}
	return n
}

// TestShallowZeroAllocsPerBatch pins the no-allocation promise of the
// Reader's shallow path: allocations per file do not grow with batches.
func TestShallowZeroAllocsPerBatch(t *testing.T) {
	one := readFile(t, filepath.Join(fixtureRoot, "William0423__kafka/kafka-logs/__consumer_offsets-28/00000000000000000000.log"))
	rd := bytes.NewReader(one)
	allocs := testing.AllocsPerRun(5, func() {
		rd.Reset(one)
		r := NewReader(rd, int64(len(one)), "x.log", ReaderOptions{BaseOffset: 0})
		for r.Next() {
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
	})
	if allocs > 3 { // the Reader and its buffer, for 8202 batches
		t.Fatalf("%v allocations for 8202 batches", allocs)
	}
}
