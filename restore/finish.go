package restore

import (
	"errors"
	"os"
	"path/filepath"
	"sort"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

// finishLog turns the fetched files in dir into a log Kafka will load with
// the original offsets:
//
//   - a point-in-time cut drops later segments and truncates the segment
//     holding the cut at a batch boundary, rebuilding its indexes;
//   - transactions still open at the end are aborted, truncated away or
//     kept (OpenTxnPolicy); abort markers go into a new segment so every
//     archived .log stays byte-identical;
//   - indexes the archive lacks are rebuilt as Kafka's recovery would.
//
// It returns the log end offset.
func finishLog(dir string, pp *PartitionPlan, opts Options, res *partResult) (int64, error) {
	segs := pp.Segments
	if len(segs) == 0 {
		return 0, nil
	}
	cut := opts.ToOffset >= 0 || opts.ToTime >= 0
	keep := len(segs)
	cutLen := int64(-1)
	if cut {
		var err error
		if keep, cutLen, err = findCut(dir, segs, opts.ToOffset, opts.ToTime); err != nil {
			return 0, err
		}
	}
	// Replay the kept segments when something depends on batch contents.
	needReplay := cut
	for _, s := range segs[:keep] {
		needReplay = needReplay || s.Manifest.Summary.TransactionalBatches > 0 || !hasFile(s, segment.KindIndex) || !hasFile(s, segment.KindTimeIndex)
	}
	for {
		end, ps, err := replay(dir, segs[:keep], cutLen, needReplay, res)
		if err != nil {
			return 0, err
		}
		open := ps.OpenTxns()
		if len(open) == 0 || opts.OpenTxns == KeepOpen {
			return finishEnd(dir, segs, keep, end, res)
		}
		if opts.OpenTxns == AbortOpen {
			n, err := writeAbortMarkers(dir, end, ps, lastEpoch(segs[:keep]), segs[keep-1].Manifest.Summary.MaxTimestamp)
			if err != nil {
				return 0, err
			}
			res.markers += n
			if _, err := finishEnd(dir, segs, keep, end, res); err != nil {
				return 0, err
			}
			return end + int64(n), nil
		}
		// TruncateOpen: cut before the earliest open transaction and look again.
		first := int64(-1)
		for _, f := range open {
			if first < 0 || f < first {
				first = f
			}
		}
		if keep, cutLen, err = findCut(dir, segs[:keep], first-1, -1); err != nil {
			return 0, err
		}
		needReplay = true
	}
}

// finishEnd removes files beyond the kept range and records the cut.
func finishEnd(dir string, segs []Segment, keep int, end int64, res *partResult) (int64, error) {
	for _, s := range segs[keep:] {
		for _, f := range s.Manifest.Files {
			if err := os.Remove(filepath.Join(dir, f.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return 0, err
			}
		}
	}
	// Producer snapshots describe state at their offset: drop any past the end.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindSnapshot && n.BaseOffset > end {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	res.cut = end - 1
	return end, nil
}

func hasFile(s Segment, kind segment.FileKind) bool {
	want := segment.FormatName(s.Manifest.BaseOffset, kind)
	for _, f := range s.Manifest.Files {
		if f.Name == want {
			return true
		}
	}
	return false
}

// findCut returns how many segments to keep and the byte length of the last
// one (-1: whole) so that only batches with lastOffset <= toOffset and
// maxTimestamp <= toTime remain (a prefix: the first batch over either
// bound ends the log; index.PointInTime).
func findCut(dir string, segs []Segment, toOffset, toTime int64) (int, int64, error) {
	pit := index.PointInTime{ToOffset: toOffset, ToTime: toTime}
	for i, s := range segs {
		if pit.KeepsWhole(s.Manifest.Summary.Segment()) {
			continue
		}
		path := filepath.Join(dir, segment.FormatName(s.Manifest.BaseOffset, segment.KindLog))
		f, err := os.Open(path)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return 0, 0, err
		}
		p, err := index.CutPrefix(f, fi.Size(), path, s.Manifest.BaseOffset, pit)
		if err != nil {
			return 0, 0, err
		}
		return i + 1, p.Length, nil
	}
	return len(segs), -1, nil
}

// replay walks the kept segments in order with Kafka's recovery rules. It
// truncates the last one to cutLen (>= 0) and writes rebuilt indexes where
// the segment was cut or the archive lacks them. Without rebuild it only
// computes the end offset from the summaries.
func replay(dir string, segs []Segment, cutLen int64, rebuild bool, res *partResult) (int64, *index.ProducerState, error) {
	ps := index.NewProducerState()
	last := segs[len(segs)-1].Manifest
	end := last.Summary.LastOffset + 1
	if last.Summary.LastOffset < 0 {
		end = last.BaseOffset
	}
	if !rebuild {
		return end, ps, nil
	}
	for i, s := range segs {
		m := s.Manifest
		path := filepath.Join(dir, segment.FormatName(m.BaseOffset, segment.KindLog))
		isCut := i == len(segs)-1 && cutLen >= 0
		if isCut {
			if err := os.Truncate(path, cutLen); err != nil {
				return 0, nil, err
			}
		}
		f, err := os.Open(path)
		if err != nil {
			return 0, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return 0, nil, err
		}
		rr, err := index.Rebuild(f, fi.Size(), path, index.RebuildOptions{BaseOffset: m.BaseOffset, Producers: ps})
		f.Close()
		if err != nil {
			return 0, nil, err
		}
		end = rr.NextOffset
		write := func(kind segment.FileKind, data []byte, always bool) error {
			if !isCut && hasFile(s, kind) {
				return nil
			}
			p := filepath.Join(dir, segment.FormatName(m.BaseOffset, kind))
			if data == nil && !always {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				return nil
			}
			res.rebuilt++
			if err := writeFile(p, data); err != nil {
				return err
			}
			return os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}
		if err := errors.Join(write(segment.KindIndex, nonNil(rr.OffsetIndex), true), write(segment.KindTimeIndex, nonNil(rr.TimeIndex), true),
			write(segment.KindTxnIndex, rr.TxnIndex, false)); err != nil {
			return 0, nil, err
		}
	}
	return end, ps, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func lastEpoch(segs []Segment) int32 {
	e := int32(0)
	for _, s := range segs {
		for _, le := range s.Manifest.Summary.LeaderEpochs {
			if le.Epoch > e {
				e = le.Epoch
			}
		}
	}
	return e
}

// writeAbortMarkers starts a new segment at end holding one ABORT marker per
// open transaction, as the transaction coordinator writes on timeout.
func writeAbortMarkers(dir string, end int64, ps *index.ProducerState, leaderEpoch int32, ts int64) (int, error) {
	open := ps.OpenTxns()
	byID := map[int64]index.ProducerEntry{}
	for _, e := range ps.Entries() {
		byID[e.ProducerID] = e
	}
	pids := make([]int64, 0, len(open))
	for pid := range open {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(i, j int) bool {
		return open[pids[i]] < open[pids[j]] || open[pids[i]] == open[pids[j]] && pids[i] < pids[j]
	})
	if ts < 0 {
		ts = 0
	}
	var log []byte
	for i, pid := range pids {
		e := byID[pid]
		log = segment.AppendTxnMarker(log, segment.TxnMarker{ProducerID: pid, Epoch: e.Epoch, Offset: end + int64(i), CoordinatorEpoch: max(e.CoordinatorEpoch, 0)}, leaderEpoch, ts)
	}
	base := segment.FormatName(end, segment.KindLog)
	if err := writeFile(filepath.Join(dir, base), log); err != nil {
		return 0, err
	}
	for _, k := range []segment.FileKind{segment.KindIndex, segment.KindTimeIndex} {
		if err := writeFile(filepath.Join(dir, segment.FormatName(end, k)), nil); err != nil {
			return 0, err
		}
	}
	return len(pids), nil
}
