package index

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Entry sizes of Kafka's sparse indexes (OffsetIndex.java, TimeIndex.java).
const (
	OffsetEntrySize = 8  // relativeOffset:int32 position:int32
	TimeEntrySize   = 12 // timestamp:int64 relativeOffset:int32
	// DefaultIndexIntervalBytes is index.interval.bytes' default.
	DefaultIndexIntervalBytes = 4096
	// DefaultMaxIndexSize is segment.index.bytes' default: the size a
	// preallocated index has before it is trimmed.
	DefaultMaxIndexSize = 10 << 20
)

// OffsetEntry is one .index entry with its absolute offset.
type OffsetEntry struct {
	Offset   int64 // baseOffset + relativeOffset
	Position int32 // byte position of a batch in the .log
}

// TimeEntry is one .timeindex entry with its absolute offset.
type TimeEntry struct {
	Timestamp int64
	Offset    int64 // baseOffset + relativeOffset
}

// Layout describes how an index file's slots are used. A rolled or
// cleanly closed segment's index is trimmed (every slot is an entry); an
// index left by a crash or copied from an active segment is preallocated to
// segment.index.bytes and zero-filled after its entries.
type Layout struct {
	Slots        int  // file length / entry size
	Entries      int  // real entries, before the first zero slot
	Trimmed      bool // Entries == Slots: no zero-filled tail
	PaddingSlots int  // Slots - Entries
	StaleSlots   int  // padding slots that are not all zero (left by truncateTo before a crash)
}

// OffsetIndex is a parsed .index file.
type OffsetIndex struct {
	Layout
	BaseOffset int64
	Entries    []OffsetEntry
}

// TimeIndex is a parsed .timeindex file.
type TimeIndex struct {
	Layout
	BaseOffset int64
	Entries    []TimeEntry
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// layout finds where the real entries of an index end. It follows
// DumpLogSegments: entries stop at the first slot i>0 whose relative
// offset is 0 (offset == baseOffset: a zero slot of a sparse preallocated
// file). Slot 0 is padding when it is all zero and the file has more than one
// slot; a one-slot file is trimmed, so its entry is real.
func layout(b []byte, size, relAt int) Layout {
	slots := len(b) / size
	n := slots
	for i := 0; i < slots; i++ {
		s := b[i*size : (i+1)*size]
		rel := binary.BigEndian.Uint32(s[relAt:])
		if (i > 0 && rel == 0) || (i == 0 && slots > 1 && allZero(s)) {
			n = i
			break
		}
	}
	l := Layout{Slots: slots, Entries: n, Trimmed: n == slots, PaddingSlots: slots - n}
	for i := n; i < slots; i++ {
		if !allZero(b[i*size : (i+1)*size]) {
			l.StaleSlots++
		}
	}
	return l
}

// ParseOffsetIndex reads a .index file of the segment with the given base
// offset. It checks the structure only (see VerifySegment for the checks
// against the .log): the size is a multiple of 8, relative offsets are not
// negative and strictly increase, positions are not negative and strictly
// increase. On an *IndexError the returned index holds the entries before
// the bad one.
func ParseOffsetIndex(name string, b []byte, baseOffset int64) (*OffsetIndex, error) {
	idx := &OffsetIndex{BaseOffset: baseOffset}
	if len(b)%OffsetEntrySize != 0 {
		idx.Layout = layout(b[:len(b)-len(b)%OffsetEntrySize], OffsetEntrySize, 0)
		return idx, indexErr(name, int64(len(b)), -1, CheckSize,
			"index file is %d bytes, which is not a multiple of %d", len(b), OffsetEntrySize)
	}
	idx.Layout = layout(b, OffsetEntrySize, 0)
	idx.Entries = make([]OffsetEntry, 0, idx.Layout.Entries)
	be := binary.BigEndian
	for i := 0; i < idx.Layout.Entries; i++ {
		p := b[i*OffsetEntrySize:]
		rel := int32(be.Uint32(p))
		pos := int32(be.Uint32(p[4:]))
		at := int64(i * OffsetEntrySize)
		if rel < 0 {
			return idx, indexErr(name, at, i, CheckOffset, "relative offset %d is negative (offset %d below the base offset %d)",
				rel, baseOffset+int64(rel), baseOffset)
		}
		if pos < 0 {
			return idx, indexErr(name, at+4, i, CheckPosition, "negative position %d", pos)
		}
		e := OffsetEntry{Offset: baseOffset + int64(rel), Position: pos}
		if i > 0 {
			prev := idx.Entries[i-1]
			if e.Offset <= prev.Offset {
				return idx, indexErr(name, at, i, CheckOffsetOrder, "offset %d is not above the previous entry's offset %d", e.Offset, prev.Offset)
			}
			if e.Position <= prev.Position {
				return idx, indexErr(name, at+4, i, CheckPositionOrder, "position %d is not above the previous entry's position %d", e.Position, prev.Position)
			}
		}
		idx.Entries = append(idx.Entries, e)
	}
	return idx, nil
}

// ParseTimeIndex reads a .timeindex file. It checks the structure only:
// the size is a multiple of 12, relative offsets are not negative and do not
// decrease, timestamps do not decrease (TimeIndex.maybeAppend refuses both).
// Equal consecutive timestamps, which Kafka never writes but only
// DumpLogSegments reports, are left to VerifySegment. On an *IndexError the
// returned index holds the entries before the bad one.
func ParseTimeIndex(name string, b []byte, baseOffset int64) (*TimeIndex, error) {
	idx := &TimeIndex{BaseOffset: baseOffset}
	if len(b)%TimeEntrySize != 0 {
		idx.Layout = layout(b[:len(b)-len(b)%TimeEntrySize], TimeEntrySize, 8)
		return idx, indexErr(name, int64(len(b)), -1, CheckSize,
			"time index file is %d bytes, which is not a multiple of %d", len(b), TimeEntrySize)
	}
	idx.Layout = layout(b, TimeEntrySize, 8)
	idx.Entries = make([]TimeEntry, 0, idx.Layout.Entries)
	be := binary.BigEndian
	for i := 0; i < idx.Layout.Entries; i++ {
		p := b[i*TimeEntrySize:]
		ts := int64(be.Uint64(p))
		rel := int32(be.Uint32(p[8:]))
		at := int64(i * TimeEntrySize)
		if rel < 0 {
			return idx, indexErr(name, at+8, i, CheckOffset, "relative offset %d is negative (offset %d below the base offset %d)",
				rel, baseOffset+int64(rel), baseOffset)
		}
		e := TimeEntry{Timestamp: ts, Offset: baseOffset + int64(rel)}
		if i > 0 {
			prev := idx.Entries[i-1]
			if e.Timestamp < prev.Timestamp {
				return idx, indexErr(name, at, i, CheckTimeOrder, "timestamp %d is below the previous entry's timestamp %d", e.Timestamp, prev.Timestamp)
			}
			if e.Offset < prev.Offset {
				return idx, indexErr(name, at+8, i, CheckOffsetOrder, "offset %d is below the previous entry's offset %d", e.Offset, prev.Offset)
			}
		}
		idx.Entries = append(idx.Entries, e)
	}
	return idx, nil
}

func appendOffsetEntry(b []byte, e OffsetEntry, baseOffset int64) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(int32(e.Offset-baseOffset)))
	return binary.BigEndian.AppendUint32(b, uint32(e.Position))
}

func appendTimeEntry(b []byte, e TimeEntry, baseOffset int64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.Timestamp))
	return binary.BigEndian.AppendUint32(b, uint32(int32(e.Offset-baseOffset)))
}

func checkRel(off, base int64) error {
	if d := off - base; d < 0 || d > math.MaxInt32 {
		return fmt.Errorf("offset %d does not fit a relative offset from base %d", off, base)
	}
	return nil
}

// EncodeOffsetIndex writes a trimmed .index file. Every offset must lie in
// [baseOffset, baseOffset+2^31-1].
func EncodeOffsetIndex(entries []OffsetEntry, baseOffset int64) ([]byte, error) {
	b := make([]byte, 0, len(entries)*OffsetEntrySize)
	for _, e := range entries {
		if err := checkRel(e.Offset, baseOffset); err != nil {
			return nil, err
		}
		b = appendOffsetEntry(b, e, baseOffset)
	}
	return b, nil
}

// EncodeTimeIndex writes a trimmed .timeindex file. Every offset must lie
// in [baseOffset, baseOffset+2^31-1].
func EncodeTimeIndex(entries []TimeEntry, baseOffset int64) ([]byte, error) {
	b := make([]byte, 0, len(entries)*TimeEntrySize)
	for _, e := range entries {
		if err := checkRel(e.Offset, baseOffset); err != nil {
			return nil, err
		}
		b = appendTimeEntry(b, e, baseOffset)
	}
	return b, nil
}

// TrimmedLength is the length of the entries part of a possibly
// preallocated index: what Kafka's trimToValidSize would keep.
func (l Layout) TrimmedLength(entrySize int) int { return l.Entries * entrySize }
