package index

import (
	"bytes"
	"strings"
	"testing"

	"github.com/segvault/segvault/segment"
)

// TestH23ParseControlRecordUsesSegmentDecoder: markers built by segment
// decode through ParseControlRecord and ProducerState; a damaged record is
// an error naming the batch and the failed check.
func TestH23ParseControlRecordUsesSegmentDecoder(t *testing.T) {
	log := segment.AppendTxnMarker(nil, segment.TxnMarker{ProducerID: 7, Epoch: 2, Offset: 40, CoordinatorEpoch: 5}, 3, 1000)
	log = segment.AppendTxnMarker(log, segment.TxnMarker{ProducerID: 8, Epoch: 1, Offset: 41, Commit: true, CoordinatorEpoch: 6}, 3, 1001)
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "m", segment.ReaderOptions{BaseOffset: 40})
	var got []ControlRecord
	for r.Next() {
		c, ok, err := ParseControlRecord(r.Batch(), r.Raw())
		if err != nil || !ok {
			t.Fatalf("%v %v", ok, err)
		}
		got = append(got, c)
	}
	want := []ControlRecord{{Type: segment.ControlAbort, Offset: 40, Timestamp: 1000, CoordinatorEpoch: 5}, {Type: segment.ControlCommit, Offset: 41, Timestamp: 1001, CoordinatorEpoch: 6}}
	if r.Err() != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("%+v %v", got, r.Err())
	}
	raw := append([]byte(nil), log[:segment.TxnMarkerBatchSize]...)
	raw[segment.V2HeaderSize+9] = 2 // value length 1: too short for a marker
	b := &segment.Batch{}
	rr := segment.NewReader(bytes.NewReader(log), int64(len(log)), "m", segment.ReaderOptions{BaseOffset: 40})
	rr.Next()
	*b = *rr.Batch()
	_, ok, err := ParseControlRecord(b, raw)
	if ok || err == nil || !strings.Contains(err.Error(), "control batch at offset 40") || !strings.Contains(err.Error(), "check failed") {
		t.Errorf("damaged marker: %v %v", ok, err)
	}
	if _, _, err := NewProducerState().Append(b, raw); err == nil {
		t.Error("ProducerState.Append accepted a damaged marker")
	}
}
