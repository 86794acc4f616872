package archive

import "github.com/segvault/segvault/segment"

// SegmentSummary is the "summary" of a segment manifest: segment.Summary in
// the archive's own schema. Its JSON names are format v1's and must not
// change: every archived manifest decodes with them.
type SegmentSummary struct {
	BaseOffset           int64            `json:"base_offset"`
	FirstOffset          int64            `json:"first_offset"`
	LastOffset           int64            `json:"last_offset"`
	Size                 int64            `json:"size"`
	Batches              int64            `json:"batches"`
	Records              int64            `json:"records"`
	FirstTimestamp       int64            `json:"first_timestamp"`
	MaxTimestamp         int64            `json:"max_timestamp"`
	MaxTimestampOffset   int64            `json:"max_timestamp_offset"`
	LeaderEpochs         []EpochStart     `json:"leader_epochs,omitempty"`
	Producers            []ProducerRange  `json:"producers,omitempty"`
	ProducersTruncated   bool             `json:"producers_truncated,omitempty"`
	TransactionalBatches int64            `json:"transactional_batches"`
	ControlBatches       int64            `json:"control_batches"`
	Markers              []TxnMarker      `json:"txn_markers,omitempty"`
	Aborted              []AbortedTxn     `json:"aborted_txns,omitempty"`
	MarkersTruncated     bool             `json:"markers_truncated,omitempty"`
	Codecs               map[string]int64 `json:"codecs,omitempty"`
	Magics               map[int8]int64   `json:"magics,omitempty"`
	LogAppendTime        int64            `json:"log_append_time"`
	Deep                 bool             `json:"deep"`
}

// EpochStart is segment.EpochStart in the archive's schema.
type EpochStart struct {
	Epoch       int32 `json:"epoch"`
	StartOffset int64 `json:"start_offset"`
}

// ProducerRange is segment.ProducerRange in the archive's schema.
type ProducerRange struct {
	ProducerID    int64 `json:"producer_id"`
	Epoch         int16 `json:"epoch"`
	FirstSequence int32 `json:"first_sequence"`
	LastSequence  int32 `json:"last_sequence"`
	FirstOffset   int64 `json:"first_offset"`
	LastOffset    int64 `json:"last_offset"`
	Batches       int64 `json:"batches"`
}

// TxnMarker is segment.TxnMarker in the archive's schema.
type TxnMarker struct {
	ProducerID       int64 `json:"producer_id"`
	Epoch            int16 `json:"epoch"`
	Offset           int64 `json:"offset"`
	Commit           bool  `json:"commit"`
	CoordinatorEpoch int32 `json:"coordinator_epoch"`
}

// AbortedTxn is segment.AbortedTxn in the archive's schema.
type AbortedTxn struct {
	ProducerID   int64 `json:"producer_id"`
	FirstOffset  int64 `json:"first_offset"`
	MarkerOffset int64 `json:"marker_offset"`
}

// convertSlice converts each element (struct types with identical fields).
func convertSlice[T, F any](in []F, conv func(F) T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = conv(v)
	}
	return out
}

func copyMap[K comparable](in map[K]int64) map[K]int64 {
	if in == nil {
		return nil
	}
	out := make(map[K]int64, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// SummaryFromSegment converts a segment's Summary to the manifest schema
// (nil for nil).
func SummaryFromSegment(s *segment.Summary) *SegmentSummary {
	if s == nil {
		return nil
	}
	return &SegmentSummary{
		BaseOffset: s.BaseOffset, FirstOffset: s.FirstOffset, LastOffset: s.LastOffset, Size: s.Size,
		Batches: s.Batches, Records: s.Records, FirstTimestamp: s.FirstTimestamp, MaxTimestamp: s.MaxTimestamp,
		MaxTimestampOffset: s.MaxTimestampOffset,
		LeaderEpochs:       convertSlice(s.LeaderEpochs, func(e segment.EpochStart) EpochStart { return EpochStart(e) }),
		Producers:          convertSlice(s.Producers, func(p segment.ProducerRange) ProducerRange { return ProducerRange(p) }),
		ProducersTruncated: s.ProducersTruncated, TransactionalBatches: s.TransactionalBatches, ControlBatches: s.ControlBatches,
		Markers:          convertSlice(s.Markers, func(m segment.TxnMarker) TxnMarker { return TxnMarker(m) }),
		Aborted:          convertSlice(s.Aborted, func(a segment.AbortedTxn) AbortedTxn { return AbortedTxn(a) }),
		MarkersTruncated: s.MarkersTruncated, Codecs: copyMap(s.Codecs), Magics: copyMap(s.Magics),
		LogAppendTime: s.LogAppendTime, Deep: s.Deep,
	}
}

// Segment converts the manifest's summary back to a segment.Summary (nil
// for nil).
func (s *SegmentSummary) Segment() *segment.Summary {
	if s == nil {
		return nil
	}
	return &segment.Summary{
		BaseOffset: s.BaseOffset, FirstOffset: s.FirstOffset, LastOffset: s.LastOffset, Size: s.Size,
		Batches: s.Batches, Records: s.Records, FirstTimestamp: s.FirstTimestamp, MaxTimestamp: s.MaxTimestamp,
		MaxTimestampOffset: s.MaxTimestampOffset,
		LeaderEpochs:       convertSlice(s.LeaderEpochs, func(e EpochStart) segment.EpochStart { return segment.EpochStart(e) }),
		Producers:          convertSlice(s.Producers, func(p ProducerRange) segment.ProducerRange { return segment.ProducerRange(p) }),
		ProducersTruncated: s.ProducersTruncated, TransactionalBatches: s.TransactionalBatches, ControlBatches: s.ControlBatches,
		Markers:          convertSlice(s.Markers, func(m TxnMarker) segment.TxnMarker { return segment.TxnMarker(m) }),
		Aborted:          convertSlice(s.Aborted, func(a AbortedTxn) segment.AbortedTxn { return segment.AbortedTxn(a) }),
		MarkersTruncated: s.MarkersTruncated, Codecs: copyMap(s.Codecs), Magics: copyMap(s.Magics),
		LogAppendTime: s.LogAppendTime, Deep: s.Deep,
	}
}
