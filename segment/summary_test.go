package segment

import (
	"math"
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
