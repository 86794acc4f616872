package index

import (
	"errors"
	"fmt"
)

// ErrCorruptIndex is matched by every *IndexError (errors.Is(err, ErrCorruptIndex)).
var ErrCorruptIndex = errors.New("corrupt index")

// Checks an *IndexError (and a Problem) can name. They are short and stable
// so callers and tests can branch on them.
const (
	CheckSize          = "size"           // file length is not a multiple of the entry size
	CheckVersion       = "version"        // .txnindex entry version is not 0
	CheckOffset        = "offset"         // entry offset below the segment base, or past the log end
	CheckOffsetOrder   = "offset order"   // offsets not increasing
	CheckPosition      = "position"       // .index position not a batch start, negative or past the log end
	CheckPositionOrder = "position order" // .index positions not increasing
	CheckLookup        = "lookup"         // the batch before the entry's position already holds the entry's offset
	CheckTimestamp     = "timestamp"      // time-index timestamp matches no batch or record
	CheckTimeOrder     = "timestamp order"
	CheckRunningMax    = "running max"  // a batch before the entry has a larger timestamp than the entry
	CheckFinalEntry    = "final entry"  // trimmed time index without the segment's max timestamp as last entry
	CheckMarker        = "marker"       // .txnindex lastOffset is not an ABORT marker of that producer
	CheckTxnRange      = "txn range"    // firstOffset > lastOffset, or lastStableOffset out of range
	CheckStale         = "stale slots"  // non-zero bytes after the zero-filled tail of a preallocated index
	CheckHeader        = "header"       // KRaft snapshot: no SnapshotHeader first
	CheckFooter        = "footer"       // KRaft snapshot: no SnapshotFooter last
	CheckMissing       = "missing"      // note: the side file is absent
	CheckPreallocated  = "preallocated" // note: zero-filled tail, not trimmed
)

// IndexError is corruption in an index-like side file (.index, .timeindex,
// .txnindex, KRaft .checkpoint): a state the broker did not write and that
// can mislead a lookup.
type IndexError struct {
	File  string // file name as given by the caller
	Pos   int64  // byte offset of the entry (or record batch) that failed
	Entry int    // 0-based entry number, -1 when the check is about the whole file
	Check string // one of the Check* constants
	Err   error  // detail
}

func (e *IndexError) Error() string {
	if e.Entry < 0 {
		return fmt.Sprintf("%s: byte %d: %s check failed: %v", e.File, e.Pos, e.Check, e.Err)
	}
	return fmt.Sprintf("%s: entry %d at byte %d: %s check failed: %v", e.File, e.Entry, e.Pos, e.Check, e.Err)
}

func (e *IndexError) Unwrap() error { return e.Err }

// Is makes every IndexError match ErrCorruptIndex.
func (e *IndexError) Is(target error) bool { return target == ErrCorruptIndex }

func indexErr(file string, pos int64, entry int, check string, format string, args ...any) *IndexError {
	return &IndexError{File: file, Pos: pos, Entry: entry, Check: check, Err: fmt.Errorf(format, args...)}
}
