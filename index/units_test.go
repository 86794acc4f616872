package index

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/segvault/segvault/segment"
)

func TestIndexLayouts(t *testing.T) {
	idx := golden(t, "plain", "00000000000000000000.index")
	ti := golden(t, "plain", "00000000000000000000.timeindex")
	n, m := len(idx)/8, len(ti)/12
	cases := []struct {
		name                  string
		b                     []byte
		entries, slots, stale int
		trimmed               bool
	}{
		{"trimmed", idx, n, n, 0, true},
		{"preallocated", append(clone(idx), make([]byte, 8*1000)...), n, n + 1000, 0, false},
		{"stale slot after zeros", append(append(clone(idx), make([]byte, 8*3)...), idx[:8]...), n, n + 4, 1, false},
		{"empty", []byte{}, 0, 0, 0, true},
		{"all zero", make([]byte, 8*16), 0, 16, 0, false},
		{"one zero slot is an entry", make([]byte, 8), 1, 1, 0, true},
	}
	for _, tc := range cases {
		got, err := ParseOffsetIndex(tc.name, tc.b, 0)
		if err != nil || got.Entries != nil && len(got.Entries) != tc.entries || got.Layout.Entries != tc.entries || got.Slots != tc.slots || got.Trimmed != tc.trimmed || got.StaleSlots != tc.stale {
			t.Errorf("%s: %+v %v", tc.name, got.Layout, err)
		}
	}
	// A preallocated time index (a crashed active segment) stops at the first
	// zero slot, and verification says why restoring it is a hazard.
	padded := append(clone(ti), make([]byte, 12*50)...)
	got, err := ParseTimeIndex("t", padded, 0)
	if err != nil || got.Layout.Entries != m || got.Trimmed || got.PaddingSlots != 50 {
		t.Fatalf("%+v %v", got.Layout, err)
	}
	log := golden(t, "plain", "00000000000000000000.log")
	rep := verify(t, log, SideFiles{TimeIndex: padded}, VerifyOptions{})
	if rep.TimeIndex.Reproducible || len(rep.TimeIndex.Problems) != 1 || rep.TimeIndex.Problems[0].Check != "preallocated" {
		t.Errorf("%+v", rep.TimeIndex)
	}
	// A trimmed time index without its final entry (an active segment).
	rep = verify(t, log, SideFiles{TimeIndex: ti[:len(ti)-12]}, VerifyOptions{})
	if len(rep.TimeIndex.Problems) != 1 || rep.TimeIndex.Problems[0].Check != CheckFinalEntry || rep.TimeIndex.Corrupt {
		t.Errorf("%+v", rep.TimeIndex)
	}
}

func TestIndexRoundTrip(t *testing.T) {
	oe := []OffsetEntry{{101, 10}, {105, 4097}, {1<<31 - 1 + 100, 1 << 30}}
	b, err := EncodeOffsetIndex(oe, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseOffsetIndex("i", b, 100)
	if err != nil || !slices.Equal(got.Entries, oe) {
		t.Errorf("%v %v", got.Entries, err)
	}
	if _, err := EncodeOffsetIndex([]OffsetEntry{{99, 0}}, 100); err == nil {
		t.Error("offset below base encoded")
	}
	if _, err := EncodeOffsetIndex([]OffsetEntry{{100 + 1<<31, 0}}, 100); err == nil {
		t.Error("offset past int32 encoded")
	}
	te := []TimeEntry{{1, 7}, {6, 8}, {1 << 50, 9}}
	tb, err := EncodeTimeIndex(te, 7)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := ParseTimeIndex("t", tb, 7)
	if err != nil || !slices.Equal(gt.Entries, te) {
		t.Errorf("%v %v", gt.Entries, err)
	}
	tx := []AbortedTxn{{1, 3, 10, 11}, {2, 0, 12, 5}}
	xb, err := EncodeTxnIndex(tx)
	if err != nil {
		t.Fatal(err)
	}
	gx, err := ParseTxnIndex("x", xb, 10)
	if err != nil || !slices.Equal(gx, tx) {
		t.Errorf("%v %v", gx, err)
	}
	if _, err := EncodeTxnIndex([]AbortedTxn{{1, 1, 10, 11}, {1, 1, 10, 11}}); err == nil {
		t.Error("non-increasing last offsets encoded")
	}
}

func TestEpochCacheAssign(t *testing.T) {
	type E = EpochEntry
	cases := []struct {
		name  string
		start []E
		epoch int32
		off   int64
		want  []E
	}{
		{"empty", nil, 0, 0, []E{{0, 0}}},
		{"same epoch later offset", []E{{0, 0}, {2, 10}}, 2, 15, []E{{0, 0}, {2, 10}}},
		{"same epoch earlier offset", []E{{0, 0}, {2, 10}}, 2, 5, []E{{0, 0}, {2, 5}}},
		{"next epoch", []E{{0, 0}, {2, 10}}, 3, 20, []E{{0, 0}, {2, 10}, {3, 20}}},
		{"next epoch same offset replaces", []E{{0, 0}, {2, 10}}, 3, 10, []E{{0, 0}, {3, 10}}},
		{"new epoch below a later start", []E{{0, 0}, {1, 10}, {2, 20}}, 3, 15, []E{{0, 0}, {1, 10}, {3, 15}}},
		{"lower epoch truncates", []E{{0, 0}, {2, 20}}, 1, 25, []E{{0, 0}, {1, 25}}},
		{"negative ignored", []E{{0, 0}}, -1, 5, []E{{0, 0}}},
	}
	for _, tc := range cases {
		c := NewEpochCache(tc.start)
		c.Assign(tc.epoch, tc.off)
		if got := c.Entries(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
}

func TestClipLeaderEpochs(t *testing.T) {
	type E = EpochEntry
	cp := []E{{0, 0}, {1, 9}, {3, 10}, {5, 12}, {6, 13}, {7, 14}}
	cases := []struct {
		start, end int64
		want       []E
	}{
		{0, 15, cp},
		{0, 14, cp[:5]},
		{10, 13, []E{{3, 10}, {5, 12}}},
		{11, 13, []E{{3, 11}, {5, 12}}},
		{20, 30, []E{{7, 20}}},
		{0, 0, []E{}},
	}
	for _, tc := range cases {
		if got := ClipLeaderEpochs(cp, tc.start, tc.end); !slices.Equal(got, tc.want) {
			t.Errorf("[%d,%d): got %v want %v", tc.start, tc.end, got, tc.want)
		}
	}
}

func TestJavaHashMapOrder(t *testing.T) {
	// Kafka wrote 10000 before 7000 (NikhilDighe fixture): buckets 0 and 8.
	es := []ProducerEntry{{ProducerID: 7000}, {ProducerID: 10000}}
	SortProducersJavaHashMap(es)
	if es[0].ProducerID != 10000 {
		t.Errorf("%v", es)
	}
	// Past 12 entries the table doubles to 32: 16 moves after 1..15.
	var many []ProducerEntry
	for _, id := range []int64{16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12} {
		many = append(many, ProducerEntry{ProducerID: id})
	}
	SortProducersJavaHashMap(many)
	if many[0].ProducerID != 1 || many[12].ProducerID != 16 {
		t.Errorf("%v", many)
	}
}

func TestControlRecords(t *testing.T) {
	log := golden(t, "txn", "00000000000000000009.log")
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "x", segment.ReaderOptions{BaseOffset: 9})
	aborts, commits := 0, 0
	for r.Next() {
		b := r.Batch()
		c, ok, err := ParseControlRecord(b, r.Raw())
		if err != nil || ok != b.Control() {
			t.Fatalf("offset %d: %v %v", b.BaseOffset, ok, err)
		}
		if !ok {
			continue
		}
		if c.Offset != b.BaseOffset || c.CoordinatorEpoch < 0 || c.Timestamp != b.MaxTimestamp {
			t.Errorf("%+v vs %+v", c, b)
		}
		switch c.Type {
		case segment.ControlAbort:
			aborts++
		case segment.ControlCommit:
			commits++
		}
	}
	if aborts == 0 || commits == 0 {
		t.Errorf("aborts %d commits %d", aborts, commits)
	}
	// Record-level max of uncompressed batches; compressed ones need a hook.
	blog := golden(t, "batched", "00000000000000000000.log")
	r = segment.NewReader(bytes.NewReader(blog), int64(len(blog)), "b", segment.ReaderOptions{})
	for r.Next() {
		b := r.Batch()
		ts, off, ok := RecordMaxTimestamp(b, r.Raw())
		if ok != (b.Codec() == segment.CodecNone) || ok && (ts != b.MaxTimestamp || off < b.BaseOffset || off > b.LastOffset()) {
			t.Errorf("batch %d %s: %d %d %v", b.BaseOffset, b.Codec(), ts, off, ok)
		}
	}
}

func TestCheckpointEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		in    string
		n     int
		check string
	}{
		{"", 0, ""},
		{"0\n0\n", 0, ""},
		{"0\n1\n0  5\n", 1, ""},
		{"0\n2\n0 0\n1 5\n", 2, ""},
		{"00\n1\n0 5\n", 1, ""},
		{"1\n0\n", 0, "version"},
		{"0\n2\n0 0\n", 0, "count"},
		{"0\n1\n0 0\n1 5\n", 0, "count"},
		{"0\n1\n0 0\n\n", 0, "line"},
		{"0\n1\n 0 0\n", 0, "line"},
		{"0\n1\n0 x\n", 0, "line"},
		{"0\nx\n", 0, "count"},
		{"0\n-1\n", 0, "count"},
	} {
		got, err := ParseLeaderEpochCheckpoint("c", []byte(tc.in))
		var se *SideFileError
		if tc.check == "" && (err != nil || len(got) != tc.n) || tc.check != "" && (!errors.As(err, &se) || se.Check != tc.check) {
			t.Errorf("%q: %v %v", tc.in, got, err)
		}
	}
	for _, in := range []string{"version: 0\ntopic_id: nigi0dJNRASJVYh5eRn0Vg", "version: 0\ntopic_id: nigi0dJNRASJVYh5eRn0Vg\n", "version:  0\r\ntopic_id:\tnigi0dJNRASJVYh5eRn0Vg"} {
		if id, err := ParsePartitionMetadata("p", []byte(in)); err != nil || id != "nigi0dJNRASJVYh5eRn0Vg" {
			t.Errorf("%q: %v", in, err)
		}
	}
	for _, in := range []string{"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA", "version: x\ntopic_id: nigi0dJNRASJVYh5eRn0Vg", "version: 0", "version: 0\ntopic_id: nigi0dJNRASJVYh5eRn0V"} {
		if _, err := ParsePartitionMetadata("p", []byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestProducerExpire(t *testing.T) {
	es := []ProducerEntry{
		{ProducerID: 1, Epoch: 0, LastSequence: 4, LastOffset: 10, Timestamp: 1000, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1},
		{ProducerID: 2, Epoch: 3, LastSequence: 1, LastOffset: 11, Timestamp: 1000, CoordinatorEpoch: 5, CurrentTxnFirstOffset: 11},
		{ProducerID: 3, Epoch: 0, LastSequence: 9, LastOffset: 12, Timestamp: 5000, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1},
	}
	s := ProducerStateFromSnapshot(es, 13)
	if got := s.OpenTxns(); len(got) != 1 || got[2] != 11 {
		t.Errorf("open %v", got)
	}
	s.Expire(4000, 3000) // 1 is idle for 3000 ms; 2 has an open transaction
	got := s.Entries()
	if len(got) != 2 || got[0].ProducerID != 2 || got[1].ProducerID != 3 || s.EndOffset() != 13 {
		t.Errorf("after expire %+v", got)
	}
	if m := OpenTxnsFromSnapshot(es); len(m) != 1 || m[2] != 11 {
		t.Errorf("OpenTxnsFromSnapshot %v", m)
	}
}
