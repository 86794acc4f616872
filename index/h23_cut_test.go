package index

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/segvault/segvault/segment"
)

// TestH23CutPrefix cuts a real multi-batch log at every batch's last offset
// and max timestamp and checks the prefix against the batches themselves.
func TestH23CutPrefix(t *testing.T) {
	log := golden(t, "txn", "00000000000000000009.log")
	var batches []segment.Batch
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "x", segment.ReaderOptions{BaseOffset: 9})
	for r.Next() {
		batches = append(batches, *r.Batch())
	}
	if r.Err() != nil || len(batches) < 3 {
		t.Fatalf("%d batches, %v", len(batches), r.Err())
	}
	want := func(p PointInTime) Prefix {
		w := Prefix{LastOffset: -1, MaxTimestamp: -1}
		for i := range batches {
			b := &batches[i]
			if (p.ToOffset >= 0 && b.LastOffset() > p.ToOffset) || (p.ToTime >= 0 && b.MaxTimestamp > p.ToTime) {
				break
			}
			w.Length, w.LastOffset, w.MaxTimestamp = b.Pos+b.Size(), b.LastOffset(), max(w.MaxTimestamp, b.MaxTimestamp)
			w.Batches++
		}
		return w
	}
	var bounds []PointInTime
	for _, b := range batches {
		bounds = append(bounds, PointInTime{b.LastOffset(), -1}, PointInTime{b.LastOffset() - 1, -1}, PointInTime{-1, b.MaxTimestamp},
			PointInTime{-1, b.MaxTimestamp - 1}, PointInTime{b.LastOffset(), b.MaxTimestamp - 1})
	}
	bounds = append(bounds, PointInTime{-1, -1}, PointInTime{0, -1})
	for _, p := range bounds {
		got, err := CutPrefix(bytes.NewReader(log), int64(len(log)), "x", 9, p)
		if err != nil || got != want(p) {
			t.Errorf("%+v: got %+v %v, want %+v", p, got, err, want(p))
		}
	}
	// A damaged batch up to the first batch past the cut is the reader's
	// error (it checks a batch before returning it); one after, unseen.
	bad := append([]byte(nil), log...)
	bad[batches[2].Pos+20]++ // inside batch 2's CRC-covered bytes
	if _, err := CutPrefix(bytes.NewReader(bad), int64(len(bad)), "x", 9, PointInTime{-1, -1}); err == nil {
		t.Error("no error for a damaged batch")
	}
	if got, err := CutPrefix(bytes.NewReader(bad), int64(len(bad)), "x", 9, PointInTime{batches[0].LastOffset(), -1}); err != nil || got.Batches != 1 {
		t.Errorf("cut before the damage: %+v %v", got, err)
	}
	sum := &segment.Summary{LastOffset: 20, MaxTimestamp: 500}
	for _, c := range []struct {
		p    PointInTime
		keep bool
	}{{PointInTime{-1, -1}, true}, {PointInTime{20, 500}, true}, {PointInTime{19, -1}, false}, {PointInTime{-1, 499}, false}} {
		if sum.LastOffset = 20; c.p.KeepsWhole(sum) != c.keep {
			t.Errorf("KeepsWhole %+v: want %v", c.p, c.keep)
		}
	}
}

// TestH23MergeLeaderEpochs pins what restore writes as the
// leader-epoch-checkpoint of a cut or checkpoint-less restore.
func TestH23MergeLeaderEpochs(t *testing.T) {
	e := func(pairs ...int64) []EpochEntry {
		var out []EpochEntry
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, EpochEntry{Epoch: int32(pairs[i]), StartOffset: pairs[i+1]})
		}
		return out
	}
	for _, c := range []struct {
		in   []EpochEntry
		end  int64
		want []EpochEntry
	}{
		{nil, 10, nil},
		// checkpoint then summaries, overlapping: first start per epoch
		{e(0, 0, 2, 50, 5, 90, 2, 60, 5, 95, 7, 120), 200, e(0, 0, 2, 50, 5, 90, 7, 120)},
		// unsorted input; entries at or past end dropped
		{e(7, 120, 0, 0, 5, 90), 100, e(0, 0, 5, 90)},
		{e(0, 0, 5, 90), 90, e(0, 0)},
		// a later epoch starting below the earlier one's start is dropped
		{e(1, 10, 3, 5, 4, 30), 100, e(1, 10, 4, 30)},
		// equal start offsets in different epochs are both kept
		{e(1, 10, 2, 10), 100, e(1, 10, 2, 10)},
	} {
		if got := MergeLeaderEpochs(append([]EpochEntry(nil), c.in...), c.end); !reflect.DeepEqual(got, c.want) {
			t.Errorf("MergeLeaderEpochs(%v, %d) = %v, want %v", c.in, c.end, got, c.want)
		}
	}
}
