package brokersim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

// segInfo is what a test reads back from one segment file.
type segInfo struct {
	base    int64
	path    string
	batches []decodedBatch
	summary *segment.Summary
}

// readPartition lists and reads a partition dir's live segments.
func readPartition(t *testing.T, dir string) []segInfo {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []segInfo
	for _, e := range ents {
		n, ok := segment.ParseFileName(e.Name())
		if !ok || n.Kind != segment.KindLog || n.Suffix != "" {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		sum, err := segment.Scan(f, st.Size(), path, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: n.BaseOffset}, Deep: true})
		f.Close()
		if err != nil {
			t.Fatalf("scan %s: %v", path, err)
		}
		bs, err := readSegment(path, n.BaseOffset, true)
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		out = append(out, segInfo{base: n.BaseOffset, path: path, batches: bs, summary: sum})
	}
	return out
}

// expectedIndexes recomputes a segment's indexes with Kafka's per-append
// rules for one batch per append (kafka-format.md §4.3 recipe).
func expectedIndexes(bs []decodedBatch, base, interval int64, final bool) (idx, tidx []byte) {
	var pos, since int64
	maxTs, maxOff, lastTs := int64(-1), base, int64(-1)
	timeEntry := func() {
		if maxTs > lastTs {
			tidx = binary.BigEndian.AppendUint64(tidx, uint64(maxTs))
			tidx = binary.BigEndian.AppendUint32(tidx, uint32(maxOff-base))
			lastTs = maxTs
		}
	}
	for _, b := range bs {
		if b.hdr.MaxTimestamp > maxTs {
			maxTs, maxOff = b.hdr.MaxTimestamp, b.hdr.LastOffset()
		}
		if since > interval {
			idx = binary.BigEndian.AppendUint32(idx, uint32(b.hdr.LastOffset()-base))
			idx = binary.BigEndian.AppendUint32(idx, uint32(pos))
			timeEntry()
			since = 0
		}
		since += b.hdr.Size()
		pos += b.hdr.Size()
	}
	if final {
		timeEntry()
	}
	return idx, tidx
}

func checkIndexFile(t *testing.T, path string, want []byte, allocated int64, active bool) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if active {
		if int64(len(got)) != allocated {
			t.Fatalf("%s: active index is %d bytes, want preallocated %d", path, len(got), allocated)
		}
		if !bytes.Equal(got[:len(want)], want) || !allZero(got[len(want):]) {
			t.Fatalf("%s: active index entries differ from the recomputed ones", path)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, want %d bytes recomputed (trimmed)", path, len(got), len(want))
	}
}

type txnEntry struct{ pid, first, last, lso int64 }

func readTxnIndex(t *testing.T, path string) []txnEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%txnEntrySize != 0 {
		t.Fatalf("%s: %d bytes is not a multiple of 34", path, len(b))
	}
	var out []txnEntry
	for ; len(b) > 0; b = b[txnEntrySize:] {
		be := binary.BigEndian
		if v := be.Uint16(b); v != 0 {
			t.Fatalf("%s: version %d", path, v)
		}
		out = append(out, txnEntry{int64(be.Uint64(b[2:])), int64(be.Uint64(b[10:])), int64(be.Uint64(b[18:])), int64(be.Uint64(b[26:]))})
	}
	return out
}

// verifyLogDir checks a whole log dir against the Result: file layout,
// side files, every batch and record, indexes byte for byte.
func verifyLogDir(t *testing.T, res *Result, interval int64, clean bool) {
	t.Helper()
	mpData, err := os.ReadFile(filepath.Join(res.Dir, index.MetaPropertiesFile))
	if err != nil {
		t.Fatal(err)
	}
	mp, err := index.ParseMetaProperties("meta.properties", mpData)
	if err != nil {
		t.Fatal(err)
	}
	if mp.Version != 1 || mp.NodeID != res.NodeID || mp.ClusterID != res.ClusterID || mp.DirectoryID != res.DirectoryID {
		t.Fatalf("meta.properties = %+v", mp)
	}
	if err := index.ValidateTopicID(mp.DirectoryID); err != nil {
		t.Fatal(err)
	}
	hw := readCheckpoint(t, filepath.Join(res.Dir, index.ReplicationOffsetFile))
	rp := readCheckpoint(t, filepath.Join(res.Dir, index.RecoveryPointFile))
	readCheckpoint(t, filepath.Join(res.Dir, index.LogStartOffsetFile))
	if _, err := os.Stat(filepath.Join(res.Dir, index.CleanerOffsetFile)); err != nil {
		t.Fatal(err)
	}
	for _, tr := range res.Topics {
		for _, pr := range tr.Partitions {
			verifyPartition(t, &tr, &pr, interval, clean)
			key := fmt.Sprintf("%s %d", pr.Topic, pr.Partition)
			if hw[key] != pr.LogEndOffset {
				t.Fatalf("%s: replication-offset-checkpoint %d, log end %d", key, hw[key], pr.LogEndOffset)
			}
			wantRP := pr.Segments[len(pr.Segments)-1] // flushed up to the last roll
			if clean {
				wantRP = pr.LogEndOffset
			}
			if rp[key] != wantRP {
				t.Fatalf("%s: recovery point %d, want %d", key, rp[key], wantRP)
			}
		}
	}
}

func readCheckpoint(t *testing.T, path string) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	es, err := index.ParseOffsetCheckpoint(path, data)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, e := range es {
		m[fmt.Sprintf("%s %d", e.Topic, e.Partition)] = e.Offset
	}
	return m
}

func verifyPartition(t *testing.T, tr *TopicResult, pr *PartitionResult, interval int64, clean bool) {
	t.Helper()
	dir := pr.Dir
	pm, err := os.ReadFile(filepath.Join(dir, index.PartitionMetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := index.ParsePartitionMetadata("pm", pm); err != nil || id != tr.ID || len(pm) != 43 {
		t.Fatalf("%s: partition.metadata %q: %v", dir, pm, err)
	}
	le, err := os.ReadFile(filepath.Join(dir, index.LeaderEpochCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	epochs, err := index.ParseLeaderEpochCheckpoint("lec", le)
	if err != nil || len(epochs) == 0 || epochs[0].StartOffset != pr.LogStartOffset {
		t.Fatalf("%s: leader-epoch-checkpoint %q: %v", dir, le, err)
	}
	segs := readPartition(t, dir)
	var bases []int64
	for _, s := range segs {
		bases = append(bases, s.base)
	}
	if !slices.Equal(bases, pr.Segments) {
		t.Fatalf("%s: segments on disk %v, result %v", dir, bases, pr.Segments)
	}
	// Offsets contiguous from the log start to the log end; each segment
	// starts at its name's offset.
	next := pr.LogStartOffset
	pending := map[int64][]int64{} // open transactional offsets per producer
	aborted := map[int64]bool{}
	dataOffsets := map[int64]decodedRecord{}
	codecs := map[segment.Codec]int{}
	markerOffsets := map[int64]bool{}
	for si, s := range segs {
		// A clean shutdown closes the active segment like a rolled one.
		active := si == len(segs)-1 && !clean
		if len(s.batches) > 0 && s.batches[0].hdr.BaseOffset != s.base {
			t.Fatalf("%s: first batch %d, name %d", s.path, s.batches[0].hdr.BaseOffset, s.base)
		}
		var aborts []int64
		for _, b := range s.batches {
			h := &b.hdr
			if h.BaseOffset != next {
				t.Fatalf("%s: batch at %d, expected %d", s.path, h.BaseOffset, next)
			}
			next = h.NextOffset()
			want := epochs[0].Epoch
			for _, e := range epochs {
				if e.StartOffset <= h.BaseOffset {
					want = e.Epoch
				}
			}
			if h.PartitionLeaderEpoch != want {
				t.Fatalf("%s: batch %d has leader epoch %d, checkpoint says %d", s.path, h.BaseOffset, h.PartitionLeaderEpoch, want)
			}
			if h.Control() {
				abort, _, err := parseTxnMarker(b.raw, h)
				if err != nil {
					t.Fatal(err)
				}
				markerOffsets[h.BaseOffset] = true
				if len(pending[h.ProducerID]) > 0 && abort {
					aborts = append(aborts, h.BaseOffset)
				}
				for _, o := range pending[h.ProducerID] {
					aborted[o] = abort
				}
				delete(pending, h.ProducerID)
				continue
			}
			codecs[h.Codec()]++
			for _, r := range b.records {
				off := h.BaseOffset + int64(r.OffsetDelta)
				dataOffsets[off] = decodedRecord{key: r.Key, value: r.Value, ts: h.BaseTimestamp + r.TimestampDelta64, headers: len(r.Headers)}
				if h.Transactional() {
					pending[h.ProducerID] = append(pending[h.ProducerID], off)
				}
			}
		}
		// Indexes.
		idx, tidx := expectedIndexes(s.batches, s.base, interval, !active)
		checkIndexFile(t, strings.TrimSuffix(s.path, ".log")+".index", idx, OffsetIndexAllocated, active)
		checkIndexFile(t, strings.TrimSuffix(s.path, ".log")+".timeindex", tidx, TimeIndexAllocated, active)
		if !active && len(s.batches) > 0 && len(tidx) == 0 {
			t.Fatalf("%s: rolled segment without the final time-index entry", s.path)
		}
		// Transaction index: exactly the aborted non-empty transactions
		// whose marker is in this segment.
		txn := readTxnIndex(t, strings.TrimSuffix(s.path, ".log")+".txnindex")
		var lasts []int64
		for _, e := range txn {
			lasts = append(lasts, e.last)
			if e.first > e.last || e.lso < 0 || e.lso > e.last+1 {
				t.Fatalf("%s: bad txn entry %+v", s.path, e)
			}
		}
		if !slices.Equal(lasts, aborts) {
			t.Fatalf("%s: txnindex markers %v, aborts in log %v", s.path, lasts, aborts)
		}
		// Producer snapshot at each roll.
		if si > 0 {
			snap := filepath.Join(dir, segment.FormatName(s.base, segment.KindSnapshot))
			data, err := os.ReadFile(snap)
			if err != nil {
				t.Fatal(err)
			}
			ents, err := index.DecodeProducerSnapshot(snap, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.LastOffset >= s.base || e.CurrentTxnFirstOffset >= s.base {
					t.Fatalf("%s: entry %+v beyond the snapshot offset", snap, e)
				}
			}
			if tr.Spec.Idempotent && len(ents) == 0 {
				t.Fatalf("%s: no producers in an idempotent topic's snapshot", snap)
			}
		}
	}
	if next != pr.LogEndOffset {
		t.Fatalf("%s: log ends at %d, result says %d", dir, next, pr.LogEndOffset)
	}
	if clean {
		snap := filepath.Join(dir, segment.FormatName(next, segment.KindSnapshot))
		data, err := os.ReadFile(snap)
		if err != nil {
			t.Fatalf("clean shutdown without a snapshot at the log end: %v", err)
		}
		if _, err := index.DecodeProducerSnapshot(snap, data); err != nil {
			t.Fatal(err)
		}
	}
	// Every produced record is where the producer was told it is.
	for _, r := range pr.Records {
		if r.Offset < pr.LogStartOffset {
			continue
		}
		d, ok := dataOffsets[r.Offset]
		if !ok {
			t.Fatalf("%s: record at %d missing from the log", dir, r.Offset)
		}
		if !bytes.Equal(d.key, r.Key) || !bytes.Equal(d.value, r.Value) || d.ts != r.Timestamp || d.headers != len(r.Headers) ||
			(d.value == nil) != (r.Value == nil) {
			t.Fatalf("%s: record at %d differs: log %q/%q@%d, produced %q/%q@%d", dir, r.Offset, d.key, d.value, d.ts, r.Key, r.Value, r.Timestamp)
		}
		if r.Transactional && aborted[r.Offset] != r.Aborted {
			t.Fatalf("%s: record at %d aborted=%v in the log, %v by the producer", dir, r.Offset, aborted[r.Offset], r.Aborted)
		}
		delete(dataOffsets, r.Offset)
	}
	if len(dataOffsets) != 0 {
		t.Fatalf("%s: %d records in the log were never produced", dir, len(dataOffsets))
	}
	if len(markerOffsets) != pr.Markers {
		t.Fatalf("%s: %d markers on disk, result says %d", dir, len(markerOffsets), pr.Markers)
	}
	if want := codecNames[tr.Spec.Codec]; len(pr.Records) > 0 && codecs[want] == 0 {
		t.Fatalf("%s: no %s batches (have %v)", dir, want, codecs)
	}
}

type decodedRecord struct {
	key, value []byte
	ts         int64
	headers    int
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
