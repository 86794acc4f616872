package restore

import (
	"testing"
	"time"
)

// TestH5FormatETA: the ETA is the remaining bytes over the rate so far, in
// whole seconds (it was always 0s: seconds were converted as nanoseconds).
func TestH5FormatETA(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{100, 1000, 10 * time.Second, "1m30s"}, // 10 B/s, 900 B left
		{500, 1000, 2 * time.Second, "2s"},
		{1 << 30, 3 << 30, time.Minute, "2m0s"},
		{0, 1000, time.Second, "?"},
		{1000, 1000, time.Second, "0s"},
		{1200, 1000, time.Second, "0s"},
	} {
		if got := formatETA(c.done, c.total, c.elapsed); got != c.want {
			t.Errorf("formatETA(%d, %d, %s) = %q, want %q", c.done, c.total, c.elapsed, got, c.want)
		}
	}
}
