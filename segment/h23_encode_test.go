package segment

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// h23OldAbortMarkers is what restore's hand-written abortMarker encoded
// (captured before it was replaced by AppendTxnMarker): offset, leader
// epoch, producer id, producer epoch, coordinator epoch, timestamp, bytes.
var h23OldAbortMarkers = []struct {
	off  int64
	le   int32
	pid  int64
	ep   int16
	ce   int32
	ts   int64
	want string
}{
	{0, 0, 0, 0, 0, 0, "0000000000000000000000420000000002eb82d4100030000000000000000000000000000000000000000000000000000000000000ffffffff000000012000000008000000000c00000000000000"},
	{1234567, 7, 4001, 3, 12, 1700000000123, "000000000012d687000000420000000702809bdeb70030000000000000018bcfe5687b0000018bcfe5687b0000000000000fa10003ffffffff000000012000000008000000000c00000000000c00"},
	{1099511627781, 2147483647, 4611686018427387913, 32767, 2147483647, 4611686018427387907, "0000010000000005000000427fffffff02cb0018f40030000000004000000000000003400000000000000340000000000000097fffffffffff000000012000000008000000000c00007fffffff00"},
}

func TestH23AppendTxnMarkerMatchesRestoreEncoder(t *testing.T) {
	for _, c := range h23OldAbortMarkers {
		got := AppendTxnMarker(nil, TxnMarker{ProducerID: c.pid, Epoch: c.ep, Offset: c.off, CoordinatorEpoch: c.ce}, c.le, c.ts)
		if h := hex.EncodeToString(got); h != c.want {
			t.Errorf("offset %d: got\n%s\nwant\n%s", c.off, h, c.want)
		}
		if len(got) != TxnMarkerBatchSize {
			t.Errorf("len %d, TxnMarkerBatchSize %d", len(got), TxnMarkerBatchSize)
		}
	}
}

// TestH23AppendTxnMarkerDecodes reads markers back with the package's
// Reader (shallow and deep checks), DecodeRecords and Scan's summary.
func TestH23AppendTxnMarkerDecodes(t *testing.T) {
	want := []TxnMarker{
		{ProducerID: 4001, Epoch: 3, Offset: 100, CoordinatorEpoch: 12},
		{ProducerID: 4002, Epoch: 0, Offset: 101, Commit: true, CoordinatorEpoch: 0},
		{ProducerID: 1 << 40, Epoch: 32767, Offset: 102, CoordinatorEpoch: 1<<31 - 1},
	}
	var log []byte
	for _, m := range want {
		log = AppendTxnMarker(log, m, 9, 1700000000123)
	}
	r := NewReader(bytes.NewReader(log), int64(len(log)), "markers", ReaderOptions{BaseOffset: 100})
	i := 0
	for r.Next() {
		b := r.Batch()
		if !b.Control() || !b.Transactional() || b.PartitionLeaderEpoch != 9 || b.MaxTimestamp != 1700000000123 || b.BaseSequence != NoSequence {
			t.Errorf("batch %d header %+v", i, *b)
		}
		recs, err := r.Records()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := DecodeRecords(b, r.Raw(), func(rec *Record) bool {
			n++
			typ, err := ParseControlKey(rec.Key)
			ce, err2 := ParseEndTxnMarker(rec.Value)
			if err != nil || err2 != nil || (typ == ControlCommit) != want[i].Commit || ce != want[i].CoordinatorEpoch || rec.Offset != want[i].Offset {
				t.Errorf("record of batch %d: type %v epoch %d offset %d (%v %v)", i, typ, ce, rec.Offset, err, err2)
			}
			return true
		}); err != nil || n != 1 || len(recs) != 1 {
			t.Errorf("DecodeRecords: %d records, %v", n, err)
		}
		i++
	}
	if r.Err() != nil || i != len(want) {
		t.Fatalf("%d batches, %v", i, r.Err())
	}
	sum, err := Scan(bytes.NewReader(log), int64(len(log)), "markers", ScanOptions{ReaderOptions: ReaderOptions{BaseOffset: 100}, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if jsonOf(sum.Markers) != jsonOf(want) {
		t.Errorf("summary markers %s, want %s", jsonOf(sum.Markers), jsonOf(want))
	}
}

// TestH23DecodeRecordsErrors: a damaged record is a *CorruptionError at the
// batch; legacy batches are refused.
func TestH23DecodeRecordsErrors(t *testing.T) {
	raw := AppendTxnMarker(nil, TxnMarker{ProducerID: 1, Offset: 5}, 0, 0)
	raw[V2HeaderSize+4] = 40 // key length past the record
	b := &Batch{Pos: 77}
	b.decodeV2Header(raw)
	var ce *CorruptionError
	err := DecodeRecords(b, raw, func(*Record) bool { return true })
	if !errors.As(err, &ce) || ce.Pos != 77 || ce.Check != "record" {
		t.Errorf("got %v", err)
	}
	b.Magic = MagicV1
	if err := DecodeRecords(b, raw, func(*Record) bool { return true }); !errors.As(err, &ce) || ce.Check != "magic" {
		t.Errorf("legacy: got %v", err)
	}
}
