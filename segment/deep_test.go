package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testBatch builds a v2 batch with franz-go's encoders (kmsg.Record and
// kmsg.RecordBatch); patch, when set, deliberately damages the encoded
// records before the CRC is computed, so that only deep checks can see it.
type testBatch struct {
	base      int64
	lastDelta int32 // -1: the last record's delta
	count     int32 // -1: len(recs)
	attrs     int16
	baseTS    int64
	maxTS     int64 // -1: the largest record timestamp
	pid       int64
	recs      []kmsg.Record
	patch     func(records []byte) []byte
	compress  func(records []byte) []byte
}

func rec(delta int32, key, value string) kmsg.Record {
	return kmsg.Record{OffsetDelta: delta, TimestampDelta64: int64(delta), Key: []byte(key), Value: []byte(value)}
}

func (x testBatch) build() []byte {
	var records []byte
	maxTS := int64(math.MinInt64)
	for i := range x.recs {
		r := &x.recs[i]
		r.Length = 0
		r.Length = int32(len(r.AppendTo(nil)) - 1) // the length varint is 1 byte for these small records
		records = r.AppendTo(records)
		maxTS = max(maxTS, x.baseTS+r.TimestampDelta64)
	}
	if x.patch != nil {
		records = x.patch(records)
	}
	if x.compress != nil {
		records = x.compress(records)
	}
	b := kmsg.RecordBatch{FirstOffset: x.base, Magic: 2, Attributes: x.attrs, LastOffsetDelta: x.lastDelta,
		FirstTimestamp: x.baseTS, MaxTimestamp: x.maxTS, ProducerID: x.pid, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: x.count, Records: records}
	if x.pid >= 0 {
		b.ProducerEpoch = 0
	}
	if b.LastOffsetDelta < 0 && len(x.recs) > 0 {
		b.LastOffsetDelta = x.recs[len(x.recs)-1].OffsetDelta
	}
	if b.LastOffsetDelta < 0 {
		b.LastOffsetDelta = 0
	}
	if b.NumRecords < 0 {
		b.NumRecords = int32(len(x.recs))
	}
	if b.MaxTimestamp < 0 {
		b.MaxTimestamp = maxTS
	}
	return fixBatch(b.AppendTo(nil))
}

// fixBatch recomputes a v2 batch's length and CRC after a deliberate edit.
func fixBatch(raw []byte) []byte {
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-LogOverhead))
	binary.BigEndian.PutUint32(raw[offCRC:], CRC32C(raw[offAttributes:]))
	return raw
}

// recLen is the encoded size of r (as testBatch writes it).
func recLen(r kmsg.Record) int {
	r.Length = 0
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	return len(r.AppendTo(nil))
}

// setByte returns a patch that sets records[i] = v.
func setByte(i int, v byte) func([]byte) []byte {
	return func(p []byte) []byte { p[i] = v; return p }
}

func gzipOf(p []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(p)
	w.Close()
	return b.Bytes()
}

func lz4Of(p []byte) []byte {
	var b bytes.Buffer
	w := lz4.NewWriter(&b)
	w.Write(p)
	w.Close()
	return b.Bytes()
}

func zstdOf(p []byte) []byte {
	e, _ := zstd.NewWriter(nil)
	return e.EncodeAll(p, nil)
}

// xerialOf frames p as snappy-java's SnappyOutputStream does, in 32 KiB blocks.
func xerialOf(p []byte) []byte {
	out := append(xerialMagic[:0:0], xerialMagic[:]...)
	out = binary.BigEndian.AppendUint32(out, 1)
	out = binary.BigEndian.AppendUint32(out, 1)
	for len(p) > 0 {
		n := min(len(p), 32<<10)
		blk := snappy.Encode(nil, p[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(blk)))
		out = append(out, blk...)
		p = p[n:]
	}
	return out
}

// expectCorrupt scans raw deep and wants a CorruptionError at want position
// with the check and message fragment; a shallow scan must be clean when the
// damage is inside the records.
func expectCorrupt(t *testing.T, raw []byte, pos int64, check, fragment string, shallowClean bool) {
	t.Helper()
	_, err := scanBytes(raw, -1, true)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Pos != pos || ce.Check != check || !strings.Contains(err.Error(), fragment) || IsTruncated(err) {
		t.Fatalf("want %s error at %d containing %q, got %v", check, pos, fragment, err)
	}
	if _, err := scanBytes(raw, -1, false); (err == nil) != shallowClean {
		t.Fatalf("shallow scan: %v (want clean: %v)", err, shallowClean)
	}
}

func TestDeepRecordChecks(t *testing.T) {
	r0 := rec(0, "k", "v")
	second := V2HeaderSize + recLen(r0) // batch byte of record 1
	two := func() []kmsg.Record { return []kmsg.Record{rec(0, "k", "v"), rec(1, "k2", "v2")} }
	cases := []struct {
		name     string
		b        testBatch
		check    string
		fragment string
	}{
		// record 1's bytes: length, attributes, tsDelta, offsetDelta, keyLen at +4.
		{"key length -5", testBatch{recs: two(), patch: setByte(recLen(r0)+4, 9)}, "record",
			fmt.Sprintf("record 1 at batch byte %d: key length -5", second)},
		{"value length -2", testBatch{recs: two(), patch: setByte(recLen(r0)+7, 3)}, "record", "value length -2"},
		{"key longer than record", testBatch{recs: two(), patch: setByte(recLen(r0)+4, 40)}, "record", "key length 20 with"},
		{"negative header count", testBatch{recs: two(), patch: setByte(recLen(r0)+10, 1)}, "record", "header count -1"},
		{"record length too long", testBatch{recs: two(), patch: setByte(recLen(r0), 60)}, "record", "record length 30 with"},
		{"record length too short", testBatch{recs: two(), patch: func(p []byte) []byte {
			p[recLen(r0)] -= 2 // one byte shorter: the header count now lies outside
			return p
		}}, "record", "header count"},
		{"fields shorter than length", testBatch{recs: two(), patch: func(p []byte) []byte {
			p[recLen(r0)] += 2
			return append(p, 0)
		}}, "record", "record length 11 but its fields take 10 bytes"},
		{"varint overflow", testBatch{recs: []kmsg.Record{rec(0, "k", "v")}, count: 1, patch: func(p []byte) []byte {
			return append([]byte{0xff, 0xff, 0xff, 0xff, 0x7f}, p[1:]...)
		}}, "record", "record length: varint overflows"},
		{"too few records", testBatch{recs: []kmsg.Record{rec(0, "key", "value"), rec(1, "key", "value")}, count: 3, lastDelta: 2}, "record count", "declares 3 records, holds 2"},
		{"trailing bytes", testBatch{recs: two(), count: 1, lastDelta: 1}, "record count", "bytes after the 1 records"},
		{"count beyond bytes", testBatch{recs: two(), count: 1000, lastDelta: 2000}, "record count", "hold at most"},
		{"repeated delta", testBatch{recs: []kmsg.Record{rec(0, "a", "b"), rec(0, "c", "d")}, lastDelta: 1}, "offset", "offset delta 0 not above the previous record's 0"},
		{"negative delta", testBatch{recs: []kmsg.Record{rec(-1, "a", "b")}, lastDelta: 0}, "offset", "offset delta -1"},
		{"delta above last", testBatch{recs: []kmsg.Record{rec(0, "a", "b"), rec(2, "c", "d")}, lastDelta: 1, count: 2}, "offset", "offset delta 2 above the batch's last offset delta 1"},
		{"max timestamp", testBatch{recs: two(), baseTS: 1000, maxTS: 1005}, "timestamp", "largest record timestamp 1001, batch max timestamp 1005"},
		{"timestamp overflow", testBatch{recs: []kmsg.Record{{TimestampDelta64: 10, Key: []byte("k")}}, baseTS: math.MaxInt64 - 5, maxTS: math.MaxInt64},
			"timestamp", "overflows"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.b.count == 0 {
				c.b.count = -1
			}
			if c.b.lastDelta == 0 && c.b.count == -1 {
				c.b.lastDelta = -1
			}
			if c.b.maxTS == 0 {
				c.b.maxTS = -1
			}
			c.b.pid = -1
			expectCorrupt(t, c.b.build(), 0, c.check, c.fragment, true)
		})
	}
}

func TestDeepAccepts(t *testing.T) {
	cases := []struct {
		name string
		b    testBatch
	}{
		// The cleaner keeps a batch's offset range when it drops records.
		{"compacted gaps", testBatch{recs: []kmsg.Record{rec(1, "a", "b"), rec(4, "c", "d")}, lastDelta: 6, count: -1, maxTS: -1}},
		{"compacted empty", testBatch{lastDelta: 3, count: 0, maxTS: 77}},
		{"compacted empty gzip", testBatch{lastDelta: 3, count: 0, maxTS: 77, attrs: int16(CodecGzip)}},
		// LogAppendTime: maxTimestamp is the broker's time, not the records'.
		{"log append time", testBatch{recs: []kmsg.Record{rec(0, "a", "b")}, lastDelta: -1, count: -1, maxTS: 99999, attrs: attrTimestampType}},
		{"null key and value", testBatch{recs: []kmsg.Record{{Key: nil, Value: nil}}, lastDelta: -1, count: -1, maxTS: -1}},
		{"headers", testBatch{recs: []kmsg.Record{{Key: []byte("k"), Headers: []kmsg.Header{{Key: "a", Value: nil}, {Key: "", Value: []byte("x")}}}}, lastDelta: -1, count: -1, maxTS: -1}},
		{"negative timestamp delta", testBatch{recs: []kmsg.Record{{TimestampDelta64: -5, Key: []byte("k")}}, baseTS: 100, lastDelta: -1, count: -1, maxTS: -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.b.pid = -1
			s, err := scanBytes(c.b.build(), -1, true)
			if err != nil {
				t.Fatal(err)
			}
			if s.Records != int64(len(c.b.recs)) {
				t.Fatalf("%d records", s.Records)
			}
		})
	}
}

// controlBatch builds a control batch of records with the given key types.
func controlBatch(txn bool, value []byte, types ...kmsg.ControlRecordKeyType) []byte {
	var recs []kmsg.Record
	for i, ty := range types {
		k := kmsg.ControlRecordKey{Type: ty}
		recs = append(recs, kmsg.Record{OffsetDelta: int32(i), Key: k.AppendTo(nil), Value: value})
	}
	attrs := int16(attrControl)
	if txn {
		attrs |= attrTransactional
	}
	return testBatch{base: 10, recs: recs, attrs: attrs, pid: 7, lastDelta: -1, count: -1, maxTS: -1}.build()
}

func TestControlBatches(t *testing.T) {
	marker := (&kmsg.EndTxnMarker{CoordinatorEpoch: 4}).AppendTo(nil)
	ok := controlBatch(true, marker, kmsg.ControlRecordKeyTypeAbort)
	s, err := scanBytes(ok, -1, false)
	if err != nil || len(s.Markers) != 1 || s.Markers[0].Commit || s.Markers[0].CoordinatorEpoch != 4 || len(s.Aborted) != 1 ||
		s.Aborted[0].FirstOffset != -1 || s.Aborted[0].MarkerOffset != 10 {
		t.Fatalf("abort marker: %+v %v", s, err)
	}
	// KRaft control records may share a batch and are not transactional.
	if _, err := scanBytes(controlBatch(false, []byte{0, 0, 0, 0}, 2, 3, 5, 6, 4), -1, true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, fragment string
		raw            []byte
	}{
		{"two markers", "exactly 1", controlBatch(true, marker, kmsg.ControlRecordKeyTypeCommit, kmsg.ControlRecordKeyTypeCommit)},
		{"marker outside a transaction", "non-transactional", controlBatch(false, marker, kmsg.ControlRecordKeyTypeCommit)},
		{"short marker value", "want at least 6", controlBatch(true, marker[:5], kmsg.ControlRecordKeyTypeAbort)},
		{"unknown type", "unknown control record type 9", controlBatch(false, nil, 9)},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Control batches are decoded at every depth: markers feed the Summary.
			_, err := scanBytes(c.raw, -1, false)
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.Check != "control" || !strings.Contains(err.Error(), c.fragment) {
				t.Fatalf("want a control error with %q, got %v", c.fragment, err)
			}
		})
	}
}

// TestDecompression: every codec round-trips, and a bomb stops at the cap
// with a clear error instead of eating memory.
func TestDecompression(t *testing.T) {
	var recs []kmsg.Record
	for i := range 300 {
		recs = append(recs, rec(int32(i), "key", strings.Repeat("compressible ", 3)))
	}
	codecs := []struct {
		c  Codec
		fn func([]byte) []byte
	}{
		{CodecGzip, gzipOf}, {CodecSnappy, xerialOf}, {CodecSnappy, func(p []byte) []byte { return snappy.Encode(nil, p) }},
		{CodecLZ4, lz4Of}, {CodecZstd, zstdOf},
	}
	for _, c := range codecs {
		t.Run(c.c.String(), func(t *testing.T) {
			b := testBatch{recs: append([]kmsg.Record(nil), recs...), attrs: int16(c.c), compress: c.fn, lastDelta: -1, count: -1, maxTS: -1, pid: -1}
			raw := b.build()
			if s, err := scanBytes(raw, -1, true); err != nil || s.Records != 300 {
				t.Fatalf("%v", err)
			}
			// Damaged compressed data under a valid CRC.
			bad := bytes.Clone(raw)
			bad[len(bad)-3] ^= 0x55
			bad[V2HeaderSize+len(bad[V2HeaderSize:])/2] ^= 0x55
			_, err := scanBytes(fixBatch(bad), -1, true)
			var ce *CorruptionError
			if !errors.As(err, &ce) || (ce.Check != "decompress" && ce.Check != "record" && ce.Check != "record count") {
				t.Fatalf("damaged %s payload: %v", c.c, err)
			}
			// A bomb: 8 MiB of zeros in one record against a 1 MiB cap.
			big := []kmsg.Record{{Key: []byte("k"), Value: make([]byte, 8<<20)}}
			big[0].Length = int32(len(big[0].AppendTo(nil)) - 1) // measured with Length 0, a 1-byte varint
			bomb := testBatch{attrs: int16(c.c), lastDelta: 0, count: 1, maxTS: 0, pid: -1,
				compress: func([]byte) []byte { return c.fn(big[0].AppendTo(nil)) }}.build()
			if len(bomb) > 1<<20 {
				t.Fatalf("bomb of %d bytes is not a bomb", len(bomb))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err = Scan(bytes.NewReader(bomb), int64(len(bomb)), "bomb.log", ScanOptions{Deep: true,
				ReaderOptions: ReaderOptions{BaseOffset: -1, MaxDecompressedSize: 1 << 20}})
			runtime.ReadMemStats(&after)
			if !errors.As(err, &ce) || ce.Check != "decompress" || !errors.Is(err, errTooBig) || !strings.Contains(err.Error(), "MaxDecompressedSize") {
				t.Fatalf("bomb: %v", err)
			}
			// The cap plus codec state: an LZ4 frame may declare 4 MiB blocks,
			// which its reader buffers whatever the data (bounded by the format).
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 12<<20 {
				t.Fatalf("bomb allocated %d bytes against a 1 MiB cap", grew)
			}
			// The default cap lets it through.
			if _, err := scanBytes(bomb, -1, true); err != nil {
				t.Fatalf("default cap: %v", err)
			}
		})
	}
}

// TestHugeLengthsDoNotAllocate: lengths claiming 2 GiB in small files fail
// without allocating them (v2 and legacy).
func TestHugeLengthsDoNotAllocate(t *testing.T) {
	legacy := readFile(t, filepath.Join(legacyDir, "v1-none.log"))
	v2 := testBatch{recs: []kmsg.Record{rec(0, "k", "v")}, lastDelta: -1, count: -1, maxTS: -1, pid: -1}.build()
	for name, data := range map[string][]byte{"legacy": legacy, "v2": v2} {
		for _, n := range []uint32{0x7fffffff, 0x7ffffff0, 1 << 30} {
			d := bytes.Clone(data)
			binary.BigEndian.PutUint32(d[8:], n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := scanBytes(d, -1, true)
			runtime.ReadMemStats(&after)
			var ce *CorruptionError
			if !IsTruncated(err) || !errors.As(err, &ce) || ce.Pos != 0 {
				t.Fatalf("%s length %#x: %v", name, n, err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
				t.Fatalf("%s length %#x: allocated %d bytes", name, n, grew)
			}
		}
	}
	// Inside a file really that large, MaxBatchSize still bounds the buffer.
	d := bytes.Clone(legacy)
	binary.BigEndian.PutUint32(d[8:], 100<<20)
	r := NewReader(&zeroTail{data: d}, 200<<20, "big.log", ReaderOptions{BaseOffset: -1, MaxBatchSize: 1 << 20})
	if r.Next() || !strings.Contains(r.Err().Error(), "exceeds the 1048576-byte limit") {
		t.Fatalf("oversized legacy message: %v", r.Err())
	}
}

// zeroTail reads data, then zeros forever.
type zeroTail struct {
	data []byte
	off  int
}

func (z *zeroTail) Read(p []byte) (int, error) {
	n := copy(p, z.data[min(z.off, len(z.data)):])
	clear(p[n:])
	z.off += len(p)
	return len(p), nil
}

// legacyEntry returns the first log entry of a legacy fixture and its value.
func legacyEntry(t *testing.T, name string) ([]byte, legacyMessage) {
	t.Helper()
	data := readFile(t, filepath.Join(legacyDir, name))
	e := data[:LogOverhead+int(binary.BigEndian.Uint32(data[8:]))]
	var m legacyMessage
	if check, err := parseLegacy(e, &m); err != nil {
		t.Fatalf("%s: %v", check, err)
	}
	return e, m
}

// rewrap rebuilds a gzip wrapper entry around new inner bytes, fixing size and CRC.
func rewrap(e []byte, magic int8, inner []byte) []byte {
	k := legacyKeyOffsetV0
	if magic == MagicV1 {
		k = legacyKeyOffsetV1
	}
	out := append([]byte(nil), e[:k]...)
	out = binary.BigEndian.AppendUint32(out, math.MaxUint32) // null key
	z := gzipOf(inner)
	out = binary.BigEndian.AppendUint32(out, uint32(len(z)))
	out = append(out, z...)
	return fixLegacy(out)
}

func fixLegacy(e []byte) []byte {
	binary.BigEndian.PutUint32(e[8:], uint32(len(e)-LogOverhead))
	binary.BigEndian.PutUint32(e[legacyOffCRC:], crc32.ChecksumIEEE(e[offMagic:]))
	return e
}

func TestLegacyWrapperChecks(t *testing.T) {
	for _, magic := range []int8{MagicV0, MagicV1} {
		e, m := legacyEntry(t, fmt.Sprintf("v%d-gzip.log", magic))
		inner, err := newRecordDecoder(1<<20).decompress(CodecGzip, m.value, false)
		if err != nil {
			t.Fatal(err)
		}
		inner = bytes.Clone(inner)
		firstLen := LogOverhead + int(binary.BigEndian.Uint32(inner[8:]))
		cases := []struct {
			name, check, fragment string
			inner                 func([]byte) []byte
		}{
			{"nested compression", "inner message", "nested compression", func(p []byte) []byte {
				p[legacyOffAttr] = byte(CodecGzip)
				fixLegacy(p[:firstLen])
				return p
			}},
			{"inner magic", "inner message", "inside a magic", func(p []byte) []byte {
				p[offMagic] = byte(1 - magic)
				return p
			}},
			{"inner crc", "inner message", "crc mismatch", func(p []byte) []byte {
				p[firstLen-1] ^= 1
				return p
			}},
			{"no inner messages", "inner message", "holds no messages", func([]byte) []byte { return nil }},
			{"inner offsets out of order", "offset", "not above the previous", func(p []byte) []byte {
				second := p[firstLen:]
				binary.BigEndian.PutUint64(second, binary.BigEndian.Uint64(p))
				return p
			}},
			{"inner size past the end", "inner message", "message size", func(p []byte) []byte { return p[:len(p)-1] }},
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("v%d %s", magic, c.name), func(t *testing.T) {
				w := rewrap(e, magic, c.inner(bytes.Clone(inner)))
				// Wrappers are opened at every depth, so shallow reports it too.
				expectCorrupt(t, w, 0, c.check, c.fragment, false)
			})
		}
		t.Run(fmt.Sprintf("v%d wrapper offset", magic), func(t *testing.T) {
			w := rewrap(e, magic, inner)
			binary.BigEndian.PutUint64(w, 2) // the last inner offset is 4 (v0) / relative 4 (v1)
			expectCorrupt(t, w, 0, "offset", map[int8]string{0: "differs from the wrapper offset 2", 1: "below the last relative inner offset"}[magic], false)
		})
		t.Run(fmt.Sprintf("v%d good rewrap", magic), func(t *testing.T) {
			if _, err := scanBytes(rewrap(e, magic, inner), 0, true); err != nil {
				t.Fatal(err)
			}
		})
	}
	// v1 CreateTime: the wrapper timestamp is the largest inner one.
	e, _ := legacyEntry(t, "v1-gzip.log")
	e = bytes.Clone(e)
	binary.BigEndian.PutUint64(e[legacyOffTS:], 5)
	expectCorrupt(t, fixLegacy(e), 0, "timestamp", "wrapper timestamp 5", false)
	// zstd needs magic 2.
	e, _ = legacyEntry(t, "v1-none.log")
	e = bytes.Clone(e)
	e[legacyOffAttr] = byte(CodecZstd)
	expectCorrupt(t, fixLegacy(e), 0, "attributes", "not allowed with magic 1", false)
}
