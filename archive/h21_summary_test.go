package archive

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/segvault/segvault/segment"
)

// h21FullSummary sets every field of segment.Summary.
func h21FullSummary() *segment.Summary {
	return &segment.Summary{BaseOffset: 100, FirstOffset: 100, LastOffset: 199, Size: 4096, Batches: 7, Records: 100,
		FirstTimestamp: 1700000000000, MaxTimestamp: 1700000001000, MaxTimestampOffset: 150,
		LeaderEpochs:       []segment.EpochStart{{Epoch: 3, StartOffset: 100}, {Epoch: 4, StartOffset: 160}},
		Producers:          []segment.ProducerRange{{ProducerID: 9, Epoch: 2, FirstSequence: 0, LastSequence: 41, FirstOffset: 100, LastOffset: 141, Batches: 3}},
		ProducersTruncated: true, TransactionalBatches: 4, ControlBatches: 2,
		Markers:          []segment.TxnMarker{{ProducerID: 9, Epoch: 2, Offset: 142, Commit: false, CoordinatorEpoch: 5}},
		Aborted:          []segment.AbortedTxn{{ProducerID: 9, FirstOffset: -1, MarkerOffset: 142}},
		MarkersTruncated: true, Codecs: map[string]int64{"none": 5, "zstd": 2}, Magics: map[int8]int64{2: 7},
		LogAppendTime: 1, Deep: true}
}

// h21SummaryV1 is the JSON format v1 wrote for h21FullSummary (made with
// the tags segment.Summary had before the archive got its own schema).
const h21SummaryV1 = `{"base_offset":100,"first_offset":100,"last_offset":199,"size":4096,"batches":7,"records":100,"first_timestamp":1700000000000,"max_timestamp":1700000001000,"max_timestamp_offset":150,"leader_epochs":[{"epoch":3,"start_offset":100},{"epoch":4,"start_offset":160}],"producers":[{"producer_id":9,"epoch":2,"first_sequence":0,"last_sequence":41,"first_offset":100,"last_offset":141,"batches":3}],"producers_truncated":true,"transactional_batches":4,"control_batches":2,"txn_markers":[{"producer_id":9,"epoch":2,"offset":142,"commit":false,"coordinator_epoch":5}],"aborted_txns":[{"producer_id":9,"first_offset":-1,"marker_offset":142}],"markers_truncated":true,"codecs":{"none":5,"zstd":2},"magics":{"2":7},"log_append_time":1,"deep":true}`

func TestH21SummarySchemaV1(t *testing.T) {
	s := h21FullSummary()
	got, err := json.Marshal(SummaryFromSegment(s))
	if err != nil || string(got) != h21SummaryV1 {
		t.Fatalf("SummaryFromSegment marshals to\n%s (%v), want v1's\n%s", got, err, h21SummaryV1)
	}
	var d SegmentSummary
	if err := json.Unmarshal([]byte(h21SummaryV1), &d); err != nil {
		t.Fatal(err)
	}
	if back := d.Segment(); !reflect.DeepEqual(back, s) {
		t.Fatalf("v1 summary decodes to %+v, want %+v", back, s)
	}
	if SummaryFromSegment(nil) != nil || (*SegmentSummary)(nil).Segment() != nil {
		t.Fatal("nil does not convert to nil")
	}
	// Every field is converted: a new segment.Summary field must be added
	// to the schema (or consciously left out) here.
	if a, b := reflect.TypeOf(segment.Summary{}).NumField(), reflect.TypeOf(SegmentSummary{}).NumField(); a != b {
		t.Fatalf("segment.Summary has %d fields, SegmentSummary %d", a, b)
	}
}

// segment must not define the archive format: no JSON tags on the types a
// manifest carries.
func TestH21SegmentSummaryHasNoJSONTags(t *testing.T) {
	for _, v := range []any{segment.Summary{}, segment.EpochStart{}, segment.ProducerRange{}, segment.TxnMarker{}, segment.AbortedTxn{}} {
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			if tag, ok := rt.Field(i).Tag.Lookup("json"); ok {
				t.Errorf("%s.%s has json tag %q", rt, rt.Field(i).Name, tag)
			}
		}
	}
}

// The manifest summary's JSON names are snake_case (moved from segment's
// TestSummaryJSONNames, which checked them when segment defined them).
func TestH21SegmentSummaryJSONNamesSnakeCase(t *testing.T) {
	var walk func(reflect.Type)
	seen := map[reflect.Type]bool{}
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] {
			return
		}
		seen[ty] = true
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			for j, c := range name {
				if !(c >= 'a' && c <= 'z' || j > 0 && (c == '_' || c >= '0' && c <= '9')) {
					t.Errorf("%s.%s: json name %q is not snake_case", ty.Name(), f.Name, name)
					break
				}
			}
			if name == "" {
				t.Errorf("%s.%s: no json name", ty.Name(), f.Name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(SegmentSummary{}))
}
