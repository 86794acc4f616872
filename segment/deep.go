package segment

// Deep validation lives in records.go (v2 records, control records),
// legacy.go (legacy wrappers) and codec.go (decompression); this file turns
// decoded control records into the Summary's transaction markers.

// markerOf returns the transaction marker a decoded control batch holds, if
// any. checkControl has already validated the batch, so a COMMIT/ABORT key
// here is the batch's only record and its value is well formed.
func markerOf(b *Batch, recs []Record) (TxnMarker, bool) {
	if !b.Control() || len(recs) != 1 {
		return TxnMarker{}, false
	}
	t, err := ParseControlKey(recs[0].Key)
	if err != nil || (t != ControlAbort && t != ControlCommit) {
		return TxnMarker{}, false
	}
	epoch, err := ParseEndTxnMarker(recs[0].Value)
	if err != nil {
		return TxnMarker{}, false
	}
	return TxnMarker{ProducerID: b.ProducerID, Epoch: b.ProducerEpoch, Offset: recs[0].Offset, Commit: t == ControlCommit,
		CoordinatorEpoch: epoch}, true
}
