package segment

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// legacyDir holds magic 0/1 segments made by kafka-python's encoder (README).
const legacyDir = "testdata/legacy"

type legacyExpect struct {
	BaseOffset int64 `json:"base_offset"`
	Records    []struct {
		Offset    int64       `json:"offset"`
		Timestamp int64       `json:"timestamp"`
		Key       *string     `json:"key"`
		Value     *string     `json:"value"`
		Headers   [][2]string `json:"headers"`
	} `json:"records"`
}

func legacyFixtures(t testing.TB) (map[string]legacyExpect, []string) {
	t.Helper()
	var exp map[string]legacyExpect
	if err := json.Unmarshal(readFile(t, filepath.Join(legacyDir, "expected.json")), &exp); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(exp))
	for n := range exp {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 9 {
		t.Fatalf("only %d legacy fixtures", len(names))
	}
	return exp, names
}

func unhex(t testing.TB, s *string) []byte {
	if s == nil {
		return nil
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		t.Fatal(err)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// TestLegacySegments: every legacy file scans clean at both depths and
// decodes to exactly the records the generator wrote.
func TestLegacySegments(t *testing.T) {
	exp, names := legacyFixtures(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			e := exp[name]
			data := readFile(t, filepath.Join(legacyDir, name))
			shallow, err := scanBytes(data, e.BaseOffset, false)
			if err != nil {
				t.Fatalf("shallow: %v", err)
			}
			deep, err := scanBytes(data, e.BaseOffset, true)
			if err != nil {
				t.Fatalf("deep: %v", err)
			}
			deep.Deep = false
			if !summariesEqual(shallow, deep) {
				t.Fatalf("summaries differ:\n%s\n%s", jsonOf(shallow), jsonOf(deep))
			}
			n := len(e.Records)
			if deep.Records != int64(n) || deep.FirstOffset != e.Records[0].Offset || deep.LastOffset != e.Records[n-1].Offset {
				t.Fatalf("summary records %d offsets %d..%d, want %d %d..%d", deep.Records, deep.FirstOffset, deep.LastOffset,
					n, e.Records[0].Offset, e.Records[n-1].Offset)
			}
			if deep.MaxTimestamp != maxExpectedTS(e) {
				t.Fatalf("max timestamp %d, want %d", deep.MaxTimestamp, maxExpectedTS(e))
			}
			if want := e.Records[0].Timestamp; deep.FirstTimestamp != want {
				t.Fatalf("first timestamp %d, want %d", deep.FirstTimestamp, want)
			}
			r := NewReader(bytes.NewReader(data), int64(len(data)), name, ReaderOptions{BaseOffset: e.BaseOffset})
			i := 0
			for r.Next() {
				b := r.Batch()
				recs, err := r.Records()
				if err != nil {
					t.Fatal(err)
				}
				if b.BaseOffset != recs[0].Offset || b.LastOffset() != recs[len(recs)-1].Offset || int(b.RecordCount) != len(recs) {
					t.Fatalf("batch at %d: %d..%d count %d, records %d..%d", b.Pos, b.BaseOffset, b.LastOffset(), b.RecordCount,
						recs[0].Offset, recs[len(recs)-1].Offset)
				}
				for _, rec := range recs {
					w := e.Records[i]
					if rec.Offset != w.Offset || rec.Timestamp != w.Timestamp || !bytesEqualNull(rec.Key, unhex(t, w.Key)) ||
						!bytesEqualNull(rec.Value, unhex(t, w.Value)) || len(rec.Headers) != len(w.Headers) {
						t.Fatalf("record %d: got %d %d %q %q, want %+v", i, rec.Offset, rec.Timestamp, rec.Key, rec.Value, w)
					}
					for j, h := range w.Headers {
						if string(rec.Headers[j].Key) != h[0] || hex.EncodeToString(rec.Headers[j].Value) != h[1] {
							t.Fatalf("record %d header %d: %q=%q", i, j, rec.Headers[j].Key, rec.Headers[j].Value)
						}
					}
					i++
				}
			}
			if r.Err() != nil || i != n {
				t.Fatalf("%d of %d records, err %v", i, n, r.Err())
			}
		})
	}
}

func maxExpectedTS(e legacyExpect) int64 {
	m := int64(NoTimestamp)
	for _, r := range e.Records {
		m = max(m, r.Timestamp)
	}
	return m
}

// TestLegacyCorruption flips every byte of the multi-entry legacy files and
// cuts them everywhere, with the same expectations as for v2.
func TestLegacyCorruption(t *testing.T) {
	exp, names := legacyFixtures(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data := readFile(t, filepath.Join(legacyDir, name))
			testFlips(t, data, exp[name].BaseOffset, 1)
			testTruncation(t, data, exp[name].BaseOffset)
		})
	}
}

// TestLegacyLZ4HeaderChecksum: a magic 0 LZ4 wrapper carries Kafka's old
// (wrong) frame header checksum and is accepted; the same frame under
// magic 1, where Kafka checks it, is not.
func TestLegacyLZ4HeaderChecksum(t *testing.T) {
	data := readFile(t, filepath.Join(legacyDir, "v0-lz4.log"))
	var m legacyMessage
	if check, err := parseLegacy(data[:LogOverhead+int(beUint32(data[8:]))], &m); err != nil {
		t.Fatalf("%s: %v", check, err)
	}
	v := m.value
	hc := 6
	if v[4]&0x08 != 0 {
		hc += 8
	}
	if want := byte(xxh32Small(v[4:hc]) >> 8); v[hc] == want {
		t.Fatalf("fixture's lz4 header checksum %02x is the correct one; want Kafka's broken one", v[hc])
	}
	d := newRecordDecoder(1 << 20)
	if _, err := d.decompress(CodecLZ4, v, true); err != nil {
		t.Fatalf("with the magic 0 fix: %v", err)
	}
	if _, err := d.decompress(CodecLZ4, v, false); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("without the fix: want a header checksum error, got %v", err)
	}
}

func beUint32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
