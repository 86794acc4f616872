package segment

import (
	"io"
	"sort"
)

// EpochStart is one leader epoch and the first offset written in it.
type EpochStart struct {
	Epoch       int32 `json:"epoch"`
	StartOffset int64 `json:"start_offset"`
}

// ProducerRange is what one producer id wrote in a segment.
type ProducerRange struct {
	ProducerID    int64 `json:"producer_id"`
	Epoch         int16 `json:"epoch"` // the last epoch seen
	FirstSequence int32 `json:"first_sequence"`
	LastSequence  int32 `json:"last_sequence"`
	FirstOffset   int64 `json:"first_offset"`
	LastOffset    int64 `json:"last_offset"`
	Batches       int64 `json:"batches"`
}

// TxnMarker is a transaction marker (control batch) in the segment.
type TxnMarker struct {
	ProducerID int64 `json:"producer_id"`
	Epoch      int16 `json:"epoch"`
	Offset     int64 `json:"offset"`
	Commit     bool  `json:"commit"`
}

// Summary describes a segment for the archive manifest and for planning a
// restore. Offsets are absolute. Timestamps are milliseconds, -1 when none.
type Summary struct {
	BaseOffset           int64            `json:"base_offset"`  // from the file name
	FirstOffset          int64            `json:"first_offset"` // first batch's base offset, -1 if empty
	LastOffset           int64            `json:"last_offset"`  // last batch's last offset, -1 if empty
	Size                 int64            `json:"size"`
	Batches              int64            `json:"batches"`
	Records              int64            `json:"records"`
	FirstTimestamp       int64            `json:"first_timestamp"`
	MaxTimestamp         int64            `json:"max_timestamp"`
	MaxTimestampOffset   int64            `json:"max_timestamp_offset"` // last offset of the first batch with MaxTimestamp
	LeaderEpochs         []EpochStart     `json:"leader_epochs,omitempty"`
	Producers            []ProducerRange  `json:"producers,omitempty"`
	ProducersTruncated   bool             `json:"producers_truncated,omitempty"`
	TransactionalBatches int64            `json:"transactional_batches"`
	ControlBatches       int64            `json:"control_batches"`
	Markers              []TxnMarker      `json:"txn_markers,omitempty"`
	Codecs               map[string]int64 `json:"codecs,omitempty"` // batches per codec
	Magics               map[int8]int64   `json:"magics,omitempty"` // batches per magic
	LogAppendTime        int64            `json:"log_append_time"`  // batches with broker timestamps
	Deep                 bool             `json:"deep"`             // records were decompressed and parsed
}

// MaxProducersInSummary bounds the producer list so a segment written by
// very many producers cannot grow a manifest without bound.
const MaxProducersInSummary = 10000

// summarizer accumulates a Summary batch by batch.
type summarizer struct {
	s     Summary
	prods map[int64]int // producer id -> index in s.Producers
}

func newSummarizer(base int64) *summarizer {
	return &summarizer{s: Summary{BaseOffset: base, FirstOffset: -1, LastOffset: -1, FirstTimestamp: NoTimestamp,
		MaxTimestamp: NoTimestamp, MaxTimestampOffset: -1, Codecs: map[string]int64{}, Magics: map[int8]int64{}}}
}

func (z *summarizer) add(b *Batch) {
	s := &z.s
	if s.Batches == 0 {
		s.FirstOffset = b.BaseOffset
		if b.Magic >= MagicV1 {
			s.FirstTimestamp = b.MaxTimestamp
			if b.Magic == MagicV2 && !b.HasDeleteHorizon() && b.BaseTimestamp >= 0 {
				s.FirstTimestamp = b.BaseTimestamp
			}
		}
	}
	s.Batches++
	s.Records += int64(b.RecordCount)
	s.LastOffset = b.LastOffset()
	if b.MaxTimestamp > s.MaxTimestamp {
		s.MaxTimestamp, s.MaxTimestampOffset = b.MaxTimestamp, b.LastOffset()
	}
	s.Codecs[b.Codec().String()]++
	s.Magics[b.Magic]++
	if b.LogAppendTime() {
		s.LogAppendTime++
	}
	if b.Magic < MagicV2 {
		return
	}
	if n := len(s.LeaderEpochs); b.PartitionLeaderEpoch >= 0 && (n == 0 || b.PartitionLeaderEpoch > s.LeaderEpochs[n-1].Epoch) {
		s.LeaderEpochs = append(s.LeaderEpochs, EpochStart{Epoch: b.PartitionLeaderEpoch, StartOffset: b.BaseOffset})
	}
	if b.Transactional() {
		s.TransactionalBatches++
	}
	if b.Control() {
		s.ControlBatches++
	}
	if b.ProducerID < 0 || b.Control() {
		return
	}
	if z.prods == nil {
		z.prods = map[int64]int{}
	}
	i, ok := z.prods[b.ProducerID]
	if !ok {
		if len(s.Producers) >= MaxProducersInSummary {
			s.ProducersTruncated = true
			return
		}
		i = len(s.Producers)
		z.prods[b.ProducerID] = i
		s.Producers = append(s.Producers, ProducerRange{ProducerID: b.ProducerID, FirstSequence: b.BaseSequence, FirstOffset: b.BaseOffset})
	}
	p := &s.Producers[i]
	p.Epoch = b.ProducerEpoch
	p.LastSequence = b.BaseSequence + b.LastOffsetDelta
	if b.BaseSequence < 0 {
		p.LastSequence = NoSequence
	}
	p.LastOffset = b.LastOffset()
	p.Batches++
}

func (z *summarizer) finish(size int64) *Summary {
	z.s.Size = size
	sort.Slice(z.s.Producers, func(i, j int) bool { return z.s.Producers[i].ProducerID < z.s.Producers[j].ProducerID })
	return &z.s
}

// ScanOptions choose how deeply Scan checks a segment.
type ScanOptions struct {
	ReaderOptions
	Deep bool // decompress and parse every record
}

// Scan reads a whole segment from src (size bytes), runs every check the
// options ask for and returns its Summary. On error the Summary covers the
// valid prefix and the error is a *CorruptionError (or an I/O error).
func Scan(src io.Reader, size int64, name string, opts ScanOptions) (*Summary, error) {
	r := NewReader(src, size, name, opts.ReaderOptions)
	z := newSummarizer(opts.BaseOffset)
	var d *deepChecker
	if opts.Deep {
		d = newDeepChecker(name)
		z.s.Deep = true
	}
	for r.Next() {
		b := r.Batch()
		if d != nil {
			if err := d.check(b, r.Raw(), &z.s); err != nil {
				return z.finish(r.Pos()), err
			}
		} else if b.Control() && b.Magic == MagicV2 && b.Codec() == CodecNone {
			if m, ok := parseMarker(b, r.Raw()); ok {
				z.s.Markers = append(z.s.Markers, m)
			}
		}
		z.add(b)
	}
	return z.finish(r.Pos()), r.Err()
}
