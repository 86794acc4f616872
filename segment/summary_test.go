package segment

import (
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestIncrementSequence(t *testing.T) {
	for _, c := range []struct{ seq, inc, want int32 }{
		{0, 0, 0}, {5, 3, 8}, {math.MaxInt32 - 1, 1, math.MaxInt32}, {math.MaxInt32 - 1, 3, 1}, {math.MaxInt32, 1, 0},
	} {
		if got := incrementSequence(c.seq, c.inc); got != c.want {
			t.Errorf("incrementSequence(%d, %d) = %d, want %d", c.seq, c.inc, got, c.want)
		}
	}
}

// TestSummaryJSONNames keeps the manifest's field names snake_case and
// pins the ones other packages read.
func TestSummaryJSONNames(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
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
		for i := range ty.NumField() {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !snake.MatchString(name) {
				t.Errorf("%s.%s: json name %q is not snake_case", ty.Name(), f.Name, name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(Summary{}))
	s := Summary{Aborted: []AbortedTxn{{ProducerID: 1, FirstOffset: -1, MarkerOffset: 9}}, Markers: []TxnMarker{{CoordinatorEpoch: 3}}}
	b, _ := json.Marshal(s)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"base_offset", "first_offset", "last_offset", "max_timestamp_offset", "aborted_txns", "txn_markers", "deep"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary JSON lacks %q: %s", k, b)
		}
	}
	if got := m["aborted_txns"].([]any)[0].(map[string]any); got["marker_offset"] != 9.0 || got["first_offset"] != -1.0 {
		t.Errorf("aborted_txns entry %v", got)
	}
}
