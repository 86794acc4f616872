package index

import (
	"encoding/binary"
	"fmt"
)

// TxnEntrySize is the size of one .txnindex entry (AbortedTxn.java).
const TxnEntrySize = 34

// txnEntryVersion is AbortedTxn.CURRENT_VERSION.
const txnEntryVersion = 0

// Field offsets inside a .txnindex entry.
const (
	txnOffProducer = 2
	txnOffFirst    = 10
	txnOffLast     = 18
	txnOffLSO      = 26
)

// AbortedTxn is one .txnindex entry: an aborted transaction whose ABORT
// marker lies in the segment.
type AbortedTxn struct {
	ProducerID       int64
	FirstOffset      int64 // first offset of the transaction, possibly in an earlier segment
	LastOffset       int64 // offset of the ABORT marker
	LastStableOffset int64 // LSO when the marker was written (ProducerStateManager.lastStableOffset)
}

// ParseTxnIndex reads a .txnindex file of the segment with the given base
// offset and runs TransactionIndex's checks: the size is a multiple of 34,
// every entry has version 0, lastOffset is at least the segment base
// (TransactionIndex.sanityCheck) and strictly increases (TransactionIndex.append),
// firstOffset <= lastOffset. On an *IndexError the returned slice holds the
// entries before the bad one.
func ParseTxnIndex(name string, b []byte, baseOffset int64) ([]AbortedTxn, error) {
	n := len(b) / TxnEntrySize
	out := make([]AbortedTxn, 0, n)
	if len(b)%TxnEntrySize != 0 {
		return out, indexErr(name, int64(len(b)), -1, CheckSize,
			"transaction index is %d bytes, which is not a multiple of %d", len(b), TxnEntrySize)
	}
	be := binary.BigEndian
	for i := 0; i < n; i++ {
		p := b[i*TxnEntrySize:]
		at := int64(i * TxnEntrySize)
		if v := int16(be.Uint16(p)); v != txnEntryVersion {
			return out, indexErr(name, at, i, CheckVersion, "unexpected aborted transaction version %d, expected %d", v, txnEntryVersion)
		}
		t := AbortedTxn{
			ProducerID:       int64(be.Uint64(p[txnOffProducer:])),
			FirstOffset:      int64(be.Uint64(p[txnOffFirst:])),
			LastOffset:       int64(be.Uint64(p[txnOffLast:])),
			LastStableOffset: int64(be.Uint64(p[txnOffLSO:])),
		}
		if t.LastOffset < baseOffset {
			return out, indexErr(name, at+txnOffLast, i, CheckOffset,
				"last offset of aborted transaction %d is less than the segment base offset %d", t.LastOffset, baseOffset)
		}
		if i > 0 && t.LastOffset <= out[i-1].LastOffset {
			return out, indexErr(name, at+txnOffLast, i, CheckOffsetOrder,
				"last offset %d is not above the previous entry's last offset %d", t.LastOffset, out[i-1].LastOffset)
		}
		if t.FirstOffset < 0 || t.FirstOffset > t.LastOffset {
			return out, indexErr(name, at+txnOffFirst, i, CheckTxnRange, "first offset %d outside [0, last offset %d]", t.FirstOffset, t.LastOffset)
		}
		if t.LastStableOffset < 0 || t.LastStableOffset > t.LastOffset+1 {
			return out, indexErr(name, at+txnOffLSO, i, CheckTxnRange, "last stable offset %d outside [0, last offset+1 = %d]", t.LastStableOffset, t.LastOffset+1)
		}
		if t.ProducerID < 0 {
			return out, indexErr(name, at+txnOffProducer, i, CheckTxnRange, "negative producer id %d", t.ProducerID)
		}
		out = append(out, t)
	}
	return out, nil
}

func appendTxnEntry(b []byte, t AbortedTxn) []byte {
	be := binary.BigEndian
	b = be.AppendUint16(b, txnEntryVersion)
	b = be.AppendUint64(b, uint64(t.ProducerID))
	b = be.AppendUint64(b, uint64(t.FirstOffset))
	b = be.AppendUint64(b, uint64(t.LastOffset))
	return be.AppendUint64(b, uint64(t.LastStableOffset))
}

// EncodeTxnIndex writes a .txnindex file. It refuses what Kafka's
// TransactionIndex.append refuses: a lastOffset that does not strictly
// increase.
func EncodeTxnIndex(entries []AbortedTxn) ([]byte, error) {
	b := make([]byte, 0, len(entries)*TxnEntrySize)
	for i, t := range entries {
		if i > 0 && t.LastOffset <= entries[i-1].LastOffset {
			return nil, fmt.Errorf("the last offset of appended transactions must increase sequentially, but %d is not greater than current last offset %d",
				t.LastOffset, entries[i-1].LastOffset)
		}
		b = appendTxnEntry(b, t)
	}
	return b, nil
}
