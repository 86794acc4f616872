package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fuzz limits: small, so that "bounded allocation" can be asserted.
const (
	fuzzMaxBatch        = 1 << 20
	fuzzMaxDecompressed = 1 << 20
	fuzzAllocBudget     = 48 << 20 // generous: buffers, decoder state, GC noise
)

var fuzzOpts = ReaderOptions{BaseOffset: -1, MaxBatchSize: fuzzMaxBatch, MaxDecompressedSize: fuzzMaxDecompressed, BufferSize: 4096}

// fixCRCs rewrites the CRC of every whole top-level entry it can frame, so
// the fuzzer reaches the checks behind the CRC instead of stopping at it.
func fixCRCs(data []byte) []byte {
	data = bytes.Clone(data)
	for p := 0; len(data)-p >= LogOverhead+5; {
		n := int(int32(binary.BigEndian.Uint32(data[p+8:])))
		if n < 5 || n > len(data)-p-LogOverhead {
			break
		}
		e := data[p : p+LogOverhead+n]
		switch e[offMagic] {
		case MagicV2:
			if len(e) >= V2HeaderSize {
				binary.BigEndian.PutUint32(e[offCRC:], CRC32C(e[offAttributes:]))
			}
		case MagicV0, MagicV1:
			binary.BigEndian.PutUint32(e[legacyOffCRC:], crc32.ChecksumIEEE(e[offMagic:]))
		}
		p += len(e)
	}
	return data
}

// checkSegmentInvariants runs the invariants every input must keep:
//   - no panic, and every error is a *CorruptionError (the source never fails);
//   - allocation stays within a budget set by the limits, not by the input's claims;
//   - the Summary covers exactly the valid prefix, and that prefix re-scans
//     with no error to the identical Summary;
//   - a deep scan never gets further than a shallow one, and where both are
//     clean they agree;
//   - records the iterator returns lie inside their batch's offset range.
func checkSegmentInvariants(t *testing.T, data []byte) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	scan := func(d []byte, deep bool) (*Summary, error) {
		return Scan(bytes.NewReader(d), int64(len(d)), "fuzz.log", ScanOptions{ReaderOptions: fuzzOpts, Deep: deep})
	}
	deep, derr := scan(data, true)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > fuzzAllocBudget+uint64(8*len(data)) {
		t.Fatalf("deep scan of %d bytes allocated %d bytes", len(data), grew)
	}
	shallow, serr := scan(data, false)
	for _, err := range []error{derr, serr} {
		var ce *CorruptionError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("error is not a CorruptionError: %v", err)
		}
	}
	if deep.Size > shallow.Size || (derr == nil) != (deep.Size == int64(len(data))) || (serr == nil) != (shallow.Size == int64(len(data))) {
		t.Fatalf("deep prefix %d (%v), shallow prefix %d (%v), %d bytes", deep.Size, derr, shallow.Size, serr, len(data))
	}
	if derr == nil {
		d := *deep
		d.Deep = false
		if !summariesEqual(&d, shallow) {
			t.Fatalf("clean deep and shallow summaries differ:\n%s\n%s", jsonOf(&d), jsonOf(shallow))
		}
	}
	for _, c := range []struct {
		s    *Summary
		deep bool
	}{{deep, true}, {shallow, false}} {
		again, err := scan(data[:c.s.Size], c.deep)
		if err != nil || !summariesEqual(again, c.s) {
			t.Fatalf("valid prefix of %d bytes (deep %v) re-scans differently: %v\n%s\n%s", c.s.Size, c.deep, err, jsonOf(again), jsonOf(c.s))
		}
	}
	r := NewReader(bytes.NewReader(data), int64(len(data)), "fuzz.log", fuzzOpts)
	for r.Next() {
		b := *r.Batch()
		recs, err := r.Records()
		if err != nil {
			if r.Pos() != b.Pos || r.Next() {
				t.Fatalf("after a Records error the Reader must stop at the batch (%d), at %d", b.Pos, r.Pos())
			}
			break
		}
		if len(recs) != int(b.RecordCount) {
			t.Fatalf("%d records, header says %d", len(recs), b.RecordCount)
		}
		for _, rec := range recs {
			if rec.Offset < b.BaseOffset || rec.Offset > b.LastOffset() {
				t.Fatalf("record offset %d outside %d..%d", rec.Offset, b.BaseOffset, b.LastOffset())
			}
		}
	}
}

// FuzzReader feeds raw bytes (optionally with CRCs repaired) to the Reader.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = fixCRCs(data)
		}
		checkSegmentInvariants(t, data)
	})
}

// FuzzRecords fuzzes a v2 batch's records area behind a valid header and CRC.
func FuzzRecords(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if len(s) > V2HeaderSize && s[offMagic] == MagicV2 {
			n := min(len(s), LogOverhead+int(binary.BigEndian.Uint32(s[8:])))
			b := s[:n]
			f.Add(b[offAttributes+1]&7, int32(binary.BigEndian.Uint32(b[offRecordsCount:])),
				int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])), b[V2HeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, attrs uint8, count, lastDelta int32, records []byte) {
		b := kmsg.RecordBatch{Magic: 2, Attributes: int16(attrs) & 0x7f, LastOffsetDelta: lastDelta, FirstTimestamp: 1000,
			MaxTimestamp: 1000, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: count, Records: records}
		checkSegmentInvariants(t, fixBatch(b.AppendTo(nil)))
	})
}

// FuzzLegacy fuzzes the inner entries of a legacy wrapper: they are
// compressed with codec and wrapped with valid outer framing and CRC; inner
// CRCs are repaired when fix is set.
func FuzzLegacy(f *testing.F) {
	_, names := legacyFixtures(f)
	for _, name := range names {
		data := readFile(f, filepath.Join(legacyDir, name))
		for p := 0; p+LogOverhead < len(data); {
			n := LogOverhead + int(binary.BigEndian.Uint32(data[p+8:]))
			e := data[p : p+n]
			var m legacyMessage
			if _, err := parseLegacy(e, &m); err == nil && e[legacyOffAttr]&7 != 0 && e[offMagic] != MagicV2 {
				inner, err := newRecordDecoder(1<<20).decompress(Codec(e[legacyOffAttr]&7), m.value, e[offMagic] == 0 && e[legacyOffAttr]&7 == 3)
				if err == nil {
					f.Add(e[offMagic], e[legacyOffAttr], int64(binary.BigEndian.Uint64(e)), bytes.Clone(inner), true)
				}
			}
			p += n
		}
		f.Add(data[offMagic], byte(0), int64(0), data, false) // a whole file as the "inner" blob
	}
	f.Fuzz(func(t *testing.T, magic, attrs uint8, wrapperOffset int64, inner []byte, fix bool) {
		magic &= 1
		codec := Codec(attrs & 3)
		if fix {
			inner = fixCRCs(inner)
		}
		var value []byte
		switch codec {
		case CodecNone, CodecGzip:
			codec, value = CodecGzip, gzipOf(inner)
		case CodecSnappy:
			value = xerialOf(inner)
		case CodecLZ4:
			value = lz4Of(inner)
		}
		e := binary.BigEndian.AppendUint64(nil, uint64(wrapperOffset))
		e = append(e, 0, 0, 0, 0, 0, 0, 0, 0, magic, byte(codec)|attrs&attrTimestampType)
		if magic == MagicV1 {
			e = binary.BigEndian.AppendUint64(e, 1000)
		}
		e = binary.BigEndian.AppendUint32(e, 0xffffffff)
		e = binary.BigEndian.AppendUint32(e, uint32(len(value)))
		e = append(e, value...)
		checkSegmentInvariants(t, fixLegacy(e))
	})
}

// FuzzDecompress: no codec may panic or exceed the cap, whatever the input.
func FuzzDecompress(f *testing.F) {
	p := []byte(strings.Repeat("segvault decompress seed ", 40))
	f.Add(uint8(CodecGzip), gzipOf(p), false)
	f.Add(uint8(CodecSnappy), xerialOf(p), false)
	f.Add(uint8(CodecLZ4), lz4Of(p), false)
	f.Add(uint8(CodecLZ4), lz4Of(p), true)
	f.Add(uint8(CodecZstd), zstdOf(p), false)
	f.Add(uint8(CodecZstd), zstdOf(make([]byte, 4<<20)), false)
	f.Fuzz(func(t *testing.T, codec uint8, src []byte, fixHeader bool) {
		d := newRecordDecoder(fuzzMaxDecompressed)
		out, err := d.decompress(Codec(codec%5), src, fixHeader)
		if err == nil && len(out) > fuzzMaxDecompressed {
			t.Fatalf("%d bytes out, cap %d", len(out), fuzzMaxDecompressed)
		}
		if Codec(codec%5) == CodecNone && err == nil {
			t.Fatal("codec none must not decompress")
		}
	})
}

// fuzzSeeds are real segment bytes: small real-broker fixtures, the legacy
// files and one real-client segment per codec.
func fuzzSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, ff := range fixtureFiles(tb) {
		if d := readFile(tb, ff.path); len(d) <= 8<<10 {
			out = append(out, d)
		}
	}
	_, names := legacyFixtures(tb)
	for _, n := range names {
		out = append(out, readFile(tb, filepath.Join(legacyDir, n)))
	}
	return out
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the committed fuzz seed corpus under testdata/fuzz")

// TestWriteFuzzCorpus (-update-corpus) writes the seed corpus: real fixture
// bytes and a real-client segment per codec, in `go test fuzz v1` format.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	var seeds [][]byte
	for _, ff := range fixtureFiles(t) {
		if d := readFile(t, ff.path); len(d) <= 2<<10 {
			seeds = append(seeds, d)
		}
	}
	_, names := legacyFixtures(t)
	for _, n := range names {
		seeds = append(seeds, readFile(t, filepath.Join(legacyDir, n)))
	}
	for _, cc := range clientCodecs {
		k := newKfakeRun(t, cc.codec)
		cl := k.client()
		k.produce(cl, k.makeRecords(6), false)
		k.produce(cl, k.makeRecords(2), false)
		seeds = append(seeds, k.fetchSegment(cl))
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbool(%v)\n", strconv.Quote(string(s)), i%2 == 1)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recDir := filepath.Join("testdata", "fuzz", "FuzzRecords")
	if err := os.MkdirAll(recDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range seeds {
		for p := 0; p+V2HeaderSize <= len(s); {
			size := LogOverhead + int(binary.BigEndian.Uint32(s[p+8:]))
			b := s[p : p+size]
			if b[offMagic] == MagicV2 && n < 40 {
				body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\nint32(%d)\nint32(%d)\n[]byte(%s)\n", b[offAttributes+1]&0x7f,
					int32(binary.BigEndian.Uint32(b[offRecordsCount:])), int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])),
					strconv.Quote(string(b[V2HeaderSize:])))
				if err := os.WriteFile(filepath.Join(recDir, fmt.Sprintf("seed-%02d", n)), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				n++
			}
			p += size
		}
	}
}
