package e2e

import "strings"

// h11OtherGaps reports whether restore output names a gap other than the
// unarchived active segment at the end of a log (restore.PartitionPlan.TailAt),
// which every archive of a live broker has.
func h11OtherGaps(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "GAP") && !strings.Contains(l, "not archived: the broker's log end was") {
			return true
		}
	}
	return false
}
