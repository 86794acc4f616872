package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"

	"github.com/segvault/segvault/segment"
)

// The corruption tables start from Kafka-written files (the recovery
// goldens) and damage one thing each: the error must name the check and
// the exact byte position of the entry.

func golden(t testing.TB, name, file string) []byte {
	t.Helper()
	return readFile(t, filepath.Join(goldenDir, name, file))
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func put32(b []byte, at int, v int32) { binary.BigEndian.PutUint32(b[at:], uint32(v)) }
func put64(b []byte, at int, v int64) { binary.BigEndian.PutUint64(b[at:], uint64(v)) }
func get32(b []byte, at int) int32    { return int32(binary.BigEndian.Uint32(b[at:])) }
func get64(b []byte, at int) int64    { return int64(binary.BigEndian.Uint64(b[at:])) }

func wantIndexErr(t *testing.T, name string, err error, check string, pos int64, entry int) {
	t.Helper()
	var ie *IndexError
	if !errors.As(err, &ie) || !errors.Is(err, ErrCorruptIndex) {
		t.Errorf("%s: got %v, want an *IndexError %s at %d", name, err, check, pos)
		return
	}
	if ie.Check != check || ie.Pos != pos || ie.Entry != entry {
		t.Errorf("%s: got check %q pos %d entry %d (%v), want %q pos %d entry %d", name, ie.Check, ie.Pos, ie.Entry, ie, check, pos, entry)
	}
}

func TestOffsetIndexCorruption(t *testing.T) {
	log := golden(t, "plain", "00000000000000000000.log")
	idx := golden(t, "plain", "00000000000000000000.index")
	n := len(idx) / OffsetEntrySize
	if n < 10 {
		t.Fatalf("golden index has %d entries", n)
	}
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		check  string
		pos    int64
		entry  int
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-3] }, CheckSize, int64(len(idx) - 3), -1},
		{"negative relative offset", func(b []byte) []byte { b[0] = 0x80; return b }, CheckOffset, 0, 0},
		{"offset not increasing", func(b []byte) []byte { copy(b[40:44], b[32:36]); return b }, CheckOffsetOrder, 40, 5},
		{"position not increasing", func(b []byte) []byte { copy(b[44:48], b[36:40]); return b }, CheckPositionOrder, 44, 5},
		{"position inside a batch", func(b []byte) []byte { put32(b, 60, get32(b, 60)+1); return b }, CheckPosition, 60, 7},
		{"position bit flip", func(b []byte) []byte { b[3*8+7] ^= 0x02; return b }, CheckPosition, 28, 3},
		{"position past the log", func(b []byte) []byte { put32(b, (n-1)*8+4, int32(len(log))+100); return b }, CheckPosition, int64((n-1)*8 + 4), n - 1},
		{"offset past the log", func(b []byte) []byte { put32(b, (n-1)*8, get32(b, (n-1)*8)+500); return b }, CheckOffset, int64((n - 1) * 8), n - 1},
		{"lookup would skip data", func(b []byte) []byte { put32(b, 40, get32(b, 40)-1); return b }, CheckLookup, 40, 5},
	}
	for _, tc := range cases {
		b := tc.mutate(clone(idx))
		_, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "00000000000000000000.log", SideFiles{Index: b}, VerifyOptions{})
		wantIndexErr(t, tc.name, err, tc.check, tc.pos, tc.entry)
	}
}

func TestTimeIndexCorruption(t *testing.T) {
	log := golden(t, "plain", "00000000000000000000.log")
	ti := golden(t, "plain", "00000000000000000000.timeindex")
	n := len(ti) / TimeEntrySize
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		check  string
		pos    int64
		entry  int
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-5] }, CheckSize, int64(len(ti) - 5), -1},
		{"timestamp decreasing", func(b []byte) []byte { put64(b, 36, get64(b, 24)-1); return b }, CheckTimeOrder, 36, 3},
		{"offset decreasing", func(b []byte) []byte { put32(b, 44, get32(b, 32)-1); return b }, CheckOffsetOrder, 44, 3},
		{"negative relative offset", func(b []byte) []byte { b[8] = 0xff; return b }, CheckOffset, 8, 0},
		{"timestamp off by one", func(b []byte) []byte { put64(b, 48, get64(b, 48)+1); return b }, CheckTimestamp, 48, 4},
		{"offset past the log", func(b []byte) []byte { put32(b, (n-1)*12+8, get32(b, (n-1)*12+8)+10); return b }, CheckOffset, int64((n-1)*12 + 8), n - 1},
	}
	for _, tc := range cases {
		b := tc.mutate(clone(ti))
		_, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "00000000000000000000.log", SideFiles{TimeIndex: b}, VerifyOptions{})
		wantIndexErr(t, tc.name, err, tc.check, tc.pos, tc.entry)
	}
}

func TestTxnIndexCorruption(t *testing.T) {
	const base = 9
	log := golden(t, "txn", "00000000000000000009.log")
	txn := golden(t, "txn", "00000000000000000009.txnindex")
	if len(txn) != 3*TxnEntrySize {
		t.Fatalf("golden txnindex is %d bytes", len(txn))
	}
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		check  string
		pos    int64
		entry  int
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, CheckSize, int64(len(txn) - 1), -1},
		{"version", func(b []byte) []byte { b[35] = 1; return b }, CheckVersion, 34, 1},
		{"last offset below the segment base", func(b []byte) []byte { put64(b, 18, base-1); put64(b, 10, 0); put64(b, 26, base); return b }, CheckOffset, 18, 0},
		{"last offset not increasing", func(b []byte) []byte { copy(b[68+18:68+26], b[34+18:34+26]); return b }, CheckOffsetOrder, 86, 2},
		{"first offset after last", func(b []byte) []byte { put64(b, 34+10, get64(b, 34+18)+1); return b }, CheckTxnRange, 44, 1},
		{"lso past marker+1", func(b []byte) []byte { put64(b, 68+26, get64(b, 68+18)+2); return b }, CheckTxnRange, 94, 2},
		{"not a marker", func(b []byte) []byte { put64(b, 34+18, get64(b, 34+18)-1); return b }, CheckMarker, 52, 1},
		{"other producer", func(b []byte) []byte { put64(b, 34+2, get64(b, 34+2)+1); return b }, CheckMarker, 36, 1},
	}
	for _, tc := range cases {
		b := tc.mutate(clone(txn))
		_, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "00000000000000000009.log", SideFiles{TxnIndex: b}, VerifyOptions{BaseOffset: base})
		wantIndexErr(t, tc.name, err, tc.check, tc.pos, tc.entry)
	}
}

func TestSnapshotCorruption(t *testing.T) {
	snap := golden(t, "txn", "00000000000000000043.snapshot")
	fix := func(b []byte) []byte { binary.BigEndian.PutUint32(b[2:], segment.CRC32C(b[6:])); return b }
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		check  string
		pos    int64
	}{
		{"crc byte", func(b []byte) []byte { b[3] ^= 1; return b }, "crc", 2},
		{"entry byte", func(b []byte) []byte { b[20] ^= 1; return b }, "crc", 2},
		{"version", func(b []byte) []byte { b[1] = 2; return b }, "version", 0},
		{"truncated", func(b []byte) []byte { return fix(b[:len(b)-1]) }, "count", 6},
		{"count", func(b []byte) []byte { b[9]++; return fix(b) }, "count", 6},
		{"short", func(b []byte) []byte { return b[:9] }, "length", 0},
	}
	for _, tc := range cases {
		_, err := DecodeProducerSnapshot("s", tc.mutate(clone(snap)))
		var se *SideFileError
		if !errors.As(err, &se) || se.Check != tc.check || se.Pos != tc.pos {
			t.Errorf("%s: got %v, want %s at %d", tc.name, err, tc.check, tc.pos)
		}
	}
}

func TestKRaftSnapshotCorruption(t *testing.T) {
	p := filepath.Join(fixtureRoot, "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/__cluster_metadata-0/00000000000000060500-0000000025.checkpoint")
	snap := readFile(t, p)
	var pos []int64
	r := segment.NewReader(bytes.NewReader(snap), int64(len(snap)), "s", segment.ReaderOptions{BaseOffset: 0})
	for r.Next() {
		pos = append(pos, r.Batch().Pos)
	}
	if len(pos) != 3 || r.Err() != nil {
		t.Fatal(pos, r.Err())
	}
	_, err := VerifyKRaftSnapshot(bytes.NewReader(snap[:pos[2]]), pos[2], "no-footer")
	wantIndexErr(t, "no footer", err, CheckFooter, pos[1], 1)
	rest := snap[pos[1]:]
	_, err = VerifyKRaftSnapshot(bytes.NewReader(rest), int64(len(rest)), "no-header")
	wantIndexErr(t, "no header", err, CheckHeader, 0, 0)
	_, err = VerifyKRaftSnapshot(bytes.NewReader(nil), 0, "empty")
	wantIndexErr(t, "empty", err, CheckHeader, 0, -1)
	_, err = VerifyKRaftSnapshot(bytes.NewReader(snap[:len(snap)-1]), int64(len(snap)-1), "torn")
	if !segment.IsTruncated(err) {
		t.Errorf("torn: %v", err)
	}
	bad := clone(snap)
	bad[pos[1]+100] ^= 1
	_, err = VerifyKRaftSnapshot(bytes.NewReader(bad), int64(len(bad)), "crc")
	var ce *segment.CorruptionError
	if !errors.As(err, &ce) || ce.Check != "crc" || ce.Pos != pos[1] {
		t.Errorf("crc: %v", err)
	}
}

// TestCorruptLog: a damaged .log is reported as the reader's error, and
// Rebuild returns the valid prefix like Kafka's recovery would keep.
func TestCorruptLog(t *testing.T) {
	log := clone(golden(t, "plain", "00000000000000000000.log"))
	idx := golden(t, "plain", "00000000000000000000.index")
	at := int(get32(idx, 8*5+4)) // a batch start
	log[at+30] ^= 0x40
	var ce *segment.CorruptionError
	_, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "x.log", SideFiles{Index: idx}, VerifyOptions{})
	if !errors.As(err, &ce) || ce.Check != "crc" || ce.Pos != int64(at) {
		t.Fatalf("verify: %v", err)
	}
	res, err := Rebuild(bytes.NewReader(log), int64(len(log)), "x.log", RebuildOptions{})
	if !errors.As(err, &ce) || res.ValidBytes != int64(at) || !bytes.Equal(res.OffsetIndex, idx[:5*8]) {
		t.Fatalf("rebuild: %v valid %d, index %x", err, res.ValidBytes, res.OffsetIndex)
	}
}
