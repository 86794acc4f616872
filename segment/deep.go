package segment

import (
	"encoding/binary"
	"fmt"
)

// Control record types (ControlRecordType.java).
const (
	ControlAbort  = 0
	ControlCommit = 1
)

// deepChecker decompresses and parses records. Placeholder: full record
// parsing lands with the deep validator.
type deepChecker struct{ name string }

func newDeepChecker(name string) *deepChecker { return &deepChecker{name: name} }

func (d *deepChecker) check(b *Batch, raw []byte, s *Summary) error {
	if b.Control() && b.Magic == MagicV2 && b.Codec() == CodecNone {
		if m, ok := parseMarker(b, raw); ok {
			s.Markers = append(s.Markers, m)
		}
	}
	return nil
}

// parseMarker reads a transaction marker from an uncompressed control batch.
// The record's key is version:int16 type:int16 (ControlRecordType).
func parseMarker(b *Batch, raw []byte) (TxnMarker, bool) {
	if !b.Transactional() || b.RecordCount != 1 || len(raw) <= V2HeaderSize {
		return TxnMarker{}, false
	}
	p := raw[V2HeaderSize:]
	var ok bool
	// length, attributes, timestampDelta, offsetDelta, keyLen, key
	if _, p, ok = varint(p); !ok || len(p) < 1 {
		return TxnMarker{}, false
	}
	p = p[1:]
	if _, p, ok = varint(p); !ok {
		return TxnMarker{}, false
	}
	if _, p, ok = varint(p); !ok {
		return TxnMarker{}, false
	}
	kl, p, ok := varint(p)
	if !ok || kl < 4 || int64(len(p)) < kl {
		return TxnMarker{}, false
	}
	typ := int16(binary.BigEndian.Uint16(p[2:]))
	if typ != ControlAbort && typ != ControlCommit {
		return TxnMarker{}, false
	}
	return TxnMarker{ProducerID: b.ProducerID, Epoch: b.ProducerEpoch, Offset: b.BaseOffset, Commit: typ == ControlCommit}, true
}

// varint decodes a zigzag varint (Kafka's ByteUtils.readVarlong).
func varint(p []byte) (int64, []byte, bool) {
	u, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, p, false
	}
	return int64(u>>1) ^ -int64(u&1), p[n:], true
}

var _ = fmt.Sprint
