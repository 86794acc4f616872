package brokersim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

// segmentKinds are the files that make up a segment (LogSegment's files),
// in the order Kafka renames them.
var segmentKinds = []segment.FileKind{segment.KindLog, segment.KindIndex, segment.KindTimeIndex, segment.KindTxnIndex}

// deleteOldest is retention deleting the first segment
// (UnifiedLog.deleteSegments): its files and its producer snapshot are
// renamed .deleted and removed later, the log start offset moves to the
// next segment and the leader-epoch cache is truncated from the start.
func (p *partLog) deleteOldest() (int64, error) {
	if p.closed {
		return 0, errors.New("partition closed")
	}
	if len(p.segs) < 2 {
		return 0, fmt.Errorf("%s-%d has only the active segment", p.topic, p.part)
	}
	s := p.segs[0]
	p.segs = p.segs[1:]
	var renamed []string
	for _, k := range segmentKinds {
		from := s.path(p.dir, k)
		if err := os.Rename(from, from+segment.SuffixDeleted); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, fmt.Errorf("delete segment: %w", err)
		}
		renamed = append(renamed, from+segment.SuffixDeleted)
	}
	p.step("retention: segment renamed .deleted")
	snap := filepath.Join(p.dir, segment.FormatName(s.base, segment.KindSnapshot))
	if err := os.Rename(snap, snap+segment.SuffixDeleted); err == nil {
		renamed = append(renamed, snap+segment.SuffixDeleted)
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("delete producer snapshot: %w", err)
	}
	start := p.segs[0].base
	p.logStart.Store(start)
	// LeaderEpochFileCache.truncateFromStart: entries at or below the new
	// start go; the last of them is kept, moved to the start offset.
	var keep []index.EpochEntry
	var last *index.EpochEntry
	for i, e := range p.epochs {
		if e.StartOffset <= start {
			last = &p.epochs[i]
			continue
		}
		keep = append(keep, e)
	}
	if last != nil {
		keep = append([]index.EpochEntry{{Epoch: last.Epoch, StartOffset: start}}, keep...)
	}
	p.epochs = keep
	if err := p.writeEpochs(); err != nil {
		return 0, err
	}
	p.cfg.scheduleDelete(renamed...)
	return s.base, nil
}

// decodedBatch is a batch of a segment file with its records.
type decodedBatch struct {
	raw     []byte
	hdr     segment.Batch
	records []kmsg.Record
}

// readSegment reads and splits a whole segment file; with records it also
// decompresses and parses the records of data batches.
func readSegment(path string, base int64, records bool) ([]decodedBatch, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read segment: %w", err)
	}
	var out []decodedBatch
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), path, segment.ReaderOptions{BaseOffset: base})
	for r.Next() {
		b := *r.Batch()
		d := decodedBatch{raw: data[b.Pos : b.Pos+b.Size()], hdr: b}
		if records && !b.Control() {
			if d.records, err = batchRecords(d.raw); err != nil {
				return nil, fmt.Errorf("%s offset %d: %w", path, b.BaseOffset, err)
			}
		}
		out = append(out, d)
	}
	return out, r.Err()
}

// batchRecords decompresses and parses a v2 batch's records.
func batchRecords(raw []byte) ([]kmsg.Record, error) {
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(raw); err != nil {
		return nil, err
	}
	data, err := kgo.DefaultDecompressor().Decompress(kb.Records, kgo.CompressionCodecType(kb.Attributes&0x07))
	if err != nil {
		return nil, err
	}
	out := make([]kmsg.Record, 0, kb.NumRecords)
	for i := int32(0); i < kb.NumRecords; i++ {
		var rec kmsg.Record
		if err := rec.ReadFrom(data); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		l, n := binary.Varint(data)
		if n <= 0 || l < 0 || int64(len(data)-n) < l {
			return nil, fmt.Errorf("record %d: bad length", i)
		}
		data = data[int64(n)+l:]
		out = append(out, rec)
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%d bytes after the last record", len(data))
	}
	return out, nil
}

func (p *partLog) isAborted(b *segment.Batch) bool {
	if !b.Transactional() || b.Control() {
		return false
	}
	for _, a := range p.aborted {
		if a.producerID == b.ProducerID && b.BaseOffset >= a.firstOffset && b.BaseOffset <= a.lastOffset {
			return true
		}
	}
	return false
}

// compact simulates one log-cleaner pass over a single segment: an offset
// map of the latest offset per key over all inactive segments, then the
// segment is rewritten keeping only those records (markers kept, aborted
// data and null keys dropped) and swapped in through .cleaned → .swap →
// old files .deleted → .swap renamed (LocalLog.replaceSegments).
func (p *partLog) compact(base int64) error {
	if p.closed {
		return errors.New("partition closed")
	}
	at := -1
	for i, s := range p.segs {
		if s.base == base {
			at = i
		}
	}
	if at < 0 {
		return fmt.Errorf("%s-%d has no segment %d", p.topic, p.part, base)
	}
	if at == len(p.segs)-1 {
		return fmt.Errorf("%s-%d: segment %d is active; the cleaner never cleans it", p.topic, p.part, base)
	}
	// Build the offset map (Cleaner.buildOffsetMap) over the cleanable range.
	latest := map[string]int64{}
	var target []decodedBatch
	for i, s := range p.segs[:len(p.segs)-1] {
		bs, err := readSegment(s.path(p.dir, segment.KindLog), s.base, true)
		if err != nil {
			return err
		}
		if i == at {
			target = bs
		}
		for _, b := range bs {
			if b.hdr.Control() || p.isAborted(&b.hdr) {
				continue
			}
			for _, r := range b.records {
				if r.Key != nil {
					latest[string(r.Key)] = b.hdr.BaseOffset + int64(r.OffsetDelta)
				}
			}
		}
	}
	old := p.segs[at]
	var out [][]byte
	for _, b := range target {
		switch {
		case b.hdr.Control():
			out = append(out, b.raw)
			continue
		case p.isAborted(&b.hdr):
			continue
		}
		var kept []kmsg.Record
		for _, r := range b.records {
			if r.Key != nil && latest[string(r.Key)] == b.hdr.BaseOffset+int64(r.OffsetDelta) {
				kept = append(kept, r)
			}
		}
		switch {
		case len(kept) == len(b.records):
			out = append(out, b.raw)
		case len(kept) > 0:
			nb, err := rebuildBatch(&b.hdr, b.raw, kept)
			if err != nil {
				return fmt.Errorf("%s-%d offset %d: %w", p.topic, p.part, b.hdr.BaseOffset, err)
			}
			out = append(out, nb)
		}
	}
	return p.swapIn(old, out)
}

// rebuildBatch re-encodes a batch with fewer records the way the cleaner's
// MemoryRecordsBuilder does: same base offset, last offset, producer
// fields, epoch and codec; base timestamp from the first kept record, max
// timestamp recomputed; a new CRC.
func rebuildBatch(h *segment.Batch, raw []byte, kept []kmsg.Record) ([]byte, error) {
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(raw); err != nil {
		return nil, err
	}
	baseTs := h.BaseTimestamp + kept[0].TimestampDelta64
	maxTs := int64(-1)
	var recs []byte
	for _, r := range kept {
		ts := h.BaseTimestamp + r.TimestampDelta64
		maxTs = max(maxTs, ts)
		recs = appendRecord(recs, r, ts-baseTs)
	}
	if h.LogAppendTime() {
		maxTs = h.MaxTimestamp
	}
	if c := h.Codec(); c != segment.CodecNone {
		comp, err := kgo.DefaultCompressor(codecFor(c))
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		out, _ := comp.Compress(&buf, recs)
		if out == nil {
			return nil, fmt.Errorf("recompress with %s failed", c)
		}
		recs = bytes.Clone(out)
	}
	b := make([]byte, segment.V2HeaderSize, segment.V2HeaderSize+len(recs))
	copy(b, raw[:segment.V2HeaderSize])
	be := binary.BigEndian
	be.PutUint32(b[8:], uint32(segment.V2HeaderSize-segment.LogOverhead+len(recs)))
	be.PutUint64(b[27:], uint64(baseTs))
	be.PutUint64(b[35:], uint64(maxTs))
	be.PutUint32(b[57:], uint32(len(kept)))
	b = append(b, recs...)
	be.PutUint32(b[17:], segment.CRC32C(b[21:]))
	return b, nil
}

// appendRecord encodes a v2 record with a new timestamp delta.
func appendRecord(dst []byte, r kmsg.Record, tsDelta int64) []byte {
	var body []byte
	body = append(body, byte(r.Attributes))
	body = binary.AppendVarint(body, tsDelta)
	body = binary.AppendVarint(body, int64(r.OffsetDelta))
	body = appendVarBytes(body, r.Key)
	body = appendVarBytes(body, r.Value)
	body = binary.AppendVarint(body, int64(len(r.Headers)))
	for _, h := range r.Headers {
		body = appendVarBytes(body, []byte(h.Key))
		body = appendVarBytes(body, h.Value)
	}
	dst = binary.AppendVarint(dst, int64(len(body)))
	return append(dst, body...)
}

func appendVarBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func codecFor(c segment.Codec) kgo.CompressionCodec {
	switch c {
	case segment.CodecGzip:
		return kgo.GzipCompression()
	case segment.CodecSnappy:
		return kgo.SnappyCompression()
	case segment.CodecLZ4:
		return kgo.Lz4Compression()
	case segment.CodecZstd:
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// swapIn writes the cleaned segment and replaces old with it.
func (p *partLog) swapIn(old *logSegment, batches [][]byte) error {
	ns := &logSegment{base: old.base, maxTs: -1, maxTsOff: old.base, lastTimeTs: -1, lastTxnOff: -1, hasTxn: old.hasTxn}
	var logData, idx, tidx []byte
	for _, raw := range batches {
		var h segment.Batch
		r := segment.NewReader(bytes.NewReader(raw), int64(len(raw)), "cleaned", segment.ReaderOptions{BaseOffset: old.base})
		if !r.Next() {
			return fmt.Errorf("cleaned batch invalid: %w", r.Err())
		}
		h = *r.Batch()
		// The recovery rule (LogSegment.recover), batch by batch.
		if h.MaxTimestamp > ns.maxTs {
			ns.maxTs, ns.maxTsOff = h.MaxTimestamp, h.LastOffset()
		}
		if ns.bytesSince > p.cfg.indexInterval {
			idx = binary.BigEndian.AppendUint32(idx, uint32(h.LastOffset()-ns.base))
			idx = binary.BigEndian.AppendUint32(idx, uint32(len(logData)))
			if ns.maxTs > ns.lastTimeTs {
				tidx = binary.BigEndian.AppendUint64(tidx, uint64(ns.maxTs))
				tidx = binary.BigEndian.AppendUint32(tidx, uint32(ns.maxTsOff-ns.base))
				ns.lastTimeTs = ns.maxTs
			}
			ns.bytesSince = 0
		}
		ns.bytesSince += int64(len(raw))
		logData = append(logData, raw...)
	}
	if ns.maxTs > ns.lastTimeTs { // onBecomeInactiveSegment
		tidx = binary.BigEndian.AppendUint64(tidx, uint64(ns.maxTs))
		tidx = binary.BigEndian.AppendUint32(tidx, uint32(ns.maxTsOff-ns.base))
	}
	ns.size = int64(len(logData))
	files := map[segment.FileKind][]byte{segment.KindLog: logData, segment.KindIndex: idx, segment.KindTimeIndex: tidx}
	if old.hasTxn {
		// The cleaner re-appends the aborted transactions whose markers it
		// keeps (CleanedTransactionMetadata); a first pass keeps them all.
		txn, err := os.ReadFile(old.path(p.dir, segment.KindTxnIndex))
		if err != nil {
			return fmt.Errorf("read txn index: %w", err)
		}
		files[segment.KindTxnIndex] = txn
	}
	oldInfo, err := os.Stat(old.path(p.dir, segment.KindLog))
	if err != nil {
		return fmt.Errorf("stat segment: %w", err)
	}
	for _, k := range segmentKinds {
		if data, ok := files[k]; ok {
			if err := os.WriteFile(ns.path(p.dir, k)+segment.SuffixCleaned, data, 0o644); err != nil {
				return fmt.Errorf("write cleaned segment: %w", err)
			}
			// The cleaner keeps the last modified time of the old segment.
			_ = os.Chtimes(ns.path(p.dir, k)+segment.SuffixCleaned, time.Now(), oldInfo.ModTime())
		}
	}
	p.step("compact: cleaned written")
	for _, k := range segmentKinds {
		if _, ok := files[k]; ok {
			path := ns.path(p.dir, k)
			if err := os.Rename(path+segment.SuffixCleaned, path+segment.SuffixSwap); err != nil {
				return fmt.Errorf("swap cleaned segment: %w", err)
			}
		}
	}
	p.step("compact: renamed to .swap")
	var deleted []string
	for _, k := range segmentKinds {
		path := old.path(p.dir, k)
		if err := os.Rename(path, path+segment.SuffixDeleted); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("delete replaced segment: %w", err)
		}
		deleted = append(deleted, path+segment.SuffixDeleted)
	}
	p.step("compact: old segment renamed .deleted")
	for _, k := range segmentKinds {
		if _, ok := files[k]; ok {
			path := ns.path(p.dir, k)
			if err := os.Rename(path+segment.SuffixSwap, path); err != nil {
				return fmt.Errorf("install cleaned segment: %w", err)
			}
		}
	}
	p.step("compact: swap installed")
	for i, s := range p.segs {
		if s == old {
			p.segs[i] = ns
			if next := p.segs[i+1].base; next > p.cleanerPoint.Load() {
				p.cleanerPoint.Store(next)
			}
		}
	}
	p.cfg.scheduleDelete(deleted...)
	return nil
}
