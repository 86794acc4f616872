package segment

import "fmt"

// nextLegacy handles a magic 0/1 log entry. Full support lands with the
// legacy message-set decoder; until then such a file is reported clearly.
func (r *Reader) nextLegacy(pos, base int64, length int32, magic int8, remaining int64) bool {
	_ = remaining
	_ = length
	return r.fail(pos, base, "magic", fmt.Errorf("legacy message format v%d is not supported yet", magic))
}
