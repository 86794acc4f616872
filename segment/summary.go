package segment

import (
	"io"
	"math"
	"sort"
)

// EpochStart is one leader epoch and the first offset written in it.
type EpochStart struct {
	Epoch       int32
	StartOffset int64
}

// ProducerRange is what one producer id wrote in a segment.
type ProducerRange struct {
	ProducerID    int64
	Epoch         int16 // the last epoch seen
	FirstSequence int32
	LastSequence  int32
	FirstOffset   int64
	LastOffset    int64
	Batches       int64
}

// TxnMarker is a transaction marker (control batch) in the segment.
type TxnMarker struct {
	ProducerID       int64
	Epoch            int16
	Offset           int64
	Commit           bool
	CoordinatorEpoch int32
}

// AbortedTxn is an aborted transaction whose ABORT marker is in the segment:
// what Kafka's .txnindex records for this segment (section 9 of
// kafka-format.md), less the last stable offset, which depends on other
// partitions' state.
type AbortedTxn struct {
	ProducerID int64
	// FirstOffset is the transaction's first offset when its first batch is
	// in this segment, -1 when it began in an earlier one.
	FirstOffset  int64
	MarkerOffset int64 // offset of the ABORT marker
}

// Summary describes a segment for the archive manifest and for planning a
// restore. Offsets are absolute. Timestamps are milliseconds, -1 when none.
type Summary struct {
	BaseOffset           int64 // from the file name
	FirstOffset          int64 // first batch's base offset, -1 if empty
	LastOffset           int64 // last batch's last offset, -1 if empty
	Size                 int64
	Batches              int64
	Records              int64
	FirstTimestamp       int64
	MaxTimestamp         int64
	MaxTimestampOffset   int64 // last offset of the first batch with MaxTimestamp
	LeaderEpochs         []EpochStart
	Producers            []ProducerRange
	ProducersTruncated   bool
	TransactionalBatches int64
	ControlBatches       int64
	Markers              []TxnMarker
	Aborted              []AbortedTxn
	MarkersTruncated     bool             // Markers/Aborted hit MaxMarkersInSummary
	Codecs               map[string]int64 // batches per codec
	Magics               map[int8]int64   // batches per magic
	LogAppendTime        int64            // batches with broker timestamps
	Deep                 bool             // records were decompressed and parsed
}

// MaxProducersInSummary bounds the producer list so a segment written by
// very many producers cannot grow a manifest without bound.
const MaxProducersInSummary = 10000

// MaxMarkersInSummary bounds Markers and Aborted for the same reason; past
// it MarkersTruncated is set. It also bounds how many open transactions the
// summarizer tracks to find aborted transactions' first offsets.
const MaxMarkersInSummary = 100000

// summarizer accumulates a Summary batch by batch.
type summarizer struct {
	s     Summary
	prods map[int64]int   // producer id -> index in s.Producers
	open  map[int64]int64 // producer id -> first offset of its open transaction
	// Per-batch counters kept in arrays and turned into the Summary's maps
	// by finish, so that summarising allocates and hashes nothing per batch.
	codecs   [attrCodecMask + 1]int64
	magics   [MagicV2 + 1]int64
	lastPID  int64 // producer of the previous batch, to skip the map lookup
	lastProd int
}

func newSummarizer(base int64) *summarizer {
	return &summarizer{s: Summary{BaseOffset: base, FirstOffset: -1, LastOffset: -1, FirstTimestamp: NoTimestamp,
		MaxTimestamp: NoTimestamp, MaxTimestampOffset: -1, Codecs: map[string]int64{}, Magics: map[int8]int64{}}, lastPID: -1}
}

func (z *summarizer) add(b *Batch) {
	s := &z.s
	if s.Batches == 0 {
		s.FirstOffset = b.BaseOffset
		s.FirstTimestamp = b.firstTimestamp()
	}
	s.Batches++
	s.Records += int64(b.RecordCount)
	s.LastOffset = b.LastOffset()
	if b.MaxTimestamp > s.MaxTimestamp {
		s.MaxTimestamp, s.MaxTimestampOffset = b.MaxTimestamp, b.LastOffset()
	}
	z.codecs[b.Codec()]++
	z.magics[b.Magic]++
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
		if !b.Control() {
			z.openTxn(b)
		}
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
	i, ok := z.lastProd, z.lastPID == b.ProducerID
	if !ok {
		i, ok = z.prods[b.ProducerID]
	}
	if !ok {
		if len(s.Producers) >= MaxProducersInSummary {
			s.ProducersTruncated = true
			return
		}
		i = len(s.Producers)
		z.prods[b.ProducerID] = i
		s.Producers = append(s.Producers, ProducerRange{ProducerID: b.ProducerID, FirstSequence: b.BaseSequence, FirstOffset: b.BaseOffset})
	}
	z.lastPID, z.lastProd = b.ProducerID, i
	p := &s.Producers[i]
	p.Epoch = b.ProducerEpoch
	p.LastSequence = incrementSequence(b.BaseSequence, b.LastOffsetDelta)
	if b.BaseSequence < 0 {
		p.LastSequence = NoSequence
	}
	p.LastOffset = b.LastOffset()
	p.Batches++
}

// incrementSequence is Kafka's DefaultRecordBatch.incrementSequence:
// sequences wrap from MaxInt32 to 0, not to negative values.
func incrementSequence(seq, inc int32) int32 {
	if seq > math.MaxInt32-inc {
		return inc - (math.MaxInt32 - seq) - 1
	}
	return seq + inc
}

// openTxn notes where a producer's transaction began, for AbortedTxn.
func (z *summarizer) openTxn(b *Batch) {
	if _, ok := z.open[b.ProducerID]; ok {
		return
	}
	if z.open == nil {
		z.open = map[int64]int64{}
	}
	if len(z.open) >= MaxMarkersInSummary {
		z.s.MarkersTruncated = true
		return
	}
	z.open[b.ProducerID] = b.BaseOffset
}

// marker records a transaction marker; it closes the producer's transaction.
func (z *summarizer) marker(m TxnMarker) {
	s := &z.s
	first, ok := z.open[m.ProducerID]
	delete(z.open, m.ProducerID)
	if !ok {
		first = -1
	}
	if len(s.Markers) >= MaxMarkersInSummary {
		s.MarkersTruncated = true
		return
	}
	s.Markers = append(s.Markers, m)
	if !m.Commit {
		s.Aborted = append(s.Aborted, AbortedTxn{ProducerID: m.ProducerID, FirstOffset: first, MarkerOffset: m.Offset})
	}
}

func (z *summarizer) finish(size int64) *Summary {
	z.s.Size = size
	for c, n := range z.codecs {
		if n > 0 {
			z.s.Codecs[Codec(c).String()] += n
		}
	}
	for m, n := range z.magics {
		if n > 0 {
			z.s.Magics[int8(m)] += n
		}
	}
	z.codecs, z.magics = [attrCodecMask + 1]int64{}, [MagicV2 + 1]int64{}
	sort.Slice(z.s.Producers, func(i, j int) bool { return z.s.Producers[i].ProducerID < z.s.Producers[j].ProducerID })
	return &z.s
}

// ScanOptions choose how deeply Scan checks a segment.
type ScanOptions struct {
	ReaderOptions
	// Deep decompresses and parses every record (Reader.Records). Without
	// it only batch headers, lengths, CRCs and offsets are checked, except
	// that control batches and legacy compressed wrappers are always
	// decoded: the Summary's transaction markers and a legacy segment's
	// offsets and record counts exist only inside them.
	Deep bool
}

// Scan reads a whole segment from src (size bytes), runs every check the
// options ask for and returns its Summary. On error the Summary covers the
// valid prefix and the error is a *CorruptionError (or an I/O error).
func Scan(src io.Reader, size int64, name string, opts ScanOptions) (*Summary, error) {
	r := newReader(src, size, name, opts.ReaderOptions, true)
	defer r.release()
	z := newSummarizer(opts.BaseOffset)
	z.s.Deep = opts.Deep
	for r.Next() {
		b := r.Batch()
		if opts.Deep || b.Control() {
			recs, err := r.Records()
			if err != nil {
				break
			}
			if m, ok := markerOf(b, recs); ok {
				z.add(b)
				z.marker(m)
				continue
			}
		}
		z.add(b)
	}
	return z.finish(r.Pos()), r.Err()
}
