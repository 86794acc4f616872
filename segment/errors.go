package segment

import (
	"errors"
	"fmt"
)

// ErrTruncated marks a file that ends in the middle of a batch: a torn tail,
// as left by a segment that is still being written or a crash. It is reported
// inside a *CorruptionError so the position is known; callers tell it apart
// with errors.Is(err, ErrTruncated).
var ErrTruncated = errors.New("truncated batch at end of file")

// ErrCorrupt is matched by every *CorruptionError (errors.Is(err, ErrCorrupt)).
var ErrCorrupt = errors.New("corrupt segment")

// CorruptionError describes the first failed check in a segment file.
type CorruptionError struct {
	File       string // path or name of the file
	Pos        int64  // byte position of the batch (or field) that failed
	BaseOffset int64  // offset field of the failing batch as written (a legacy wrapper's is its last offset), -1 if unknown
	Check      string // short name of the failed check, e.g. "crc", "magic", "length"
	Err        error  // detail
}

func (e *CorruptionError) Error() string {
	bo := "unknown"
	if e.BaseOffset >= 0 {
		bo = fmt.Sprint(e.BaseOffset)
	}
	return fmt.Sprintf("%s: byte %d (batch base offset %s): %s check failed: %v", e.File, e.Pos, bo, e.Check, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// Is makes every CorruptionError match ErrCorrupt, except torn tails which
// match ErrTruncated through Unwrap.
func (e *CorruptionError) Is(target error) bool {
	return target == ErrCorrupt && !errors.Is(e.Err, ErrTruncated)
}

// IsTruncated reports whether err is a torn tail rather than corruption.
func IsTruncated(err error) bool { return errors.Is(err, ErrTruncated) }
