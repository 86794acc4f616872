package index

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/segment"
)

func rebuildAll(t testing.TB, log []byte, opts RebuildOptions) *RebuildResult {
	t.Helper()
	res, err := Rebuild(bytes.NewReader(log), int64(len(log)), "k.log", opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func verify(t testing.TB, log []byte, files SideFiles, opts VerifyOptions) *SegmentReport {
	t.Helper()
	rep, err := VerifySegment(bytes.NewReader(log), int64(len(log)), segment.FormatName(opts.BaseOffset, segment.KindLog), files, opts)
	if err != nil {
		t.Fatalf("verify: %v\n%+v\n%+v\n%+v", err, rep.Index, rep.TimeIndex, rep.TxnIndex)
	}
	return rep
}

// TestKfakeRebuildVerifies rebuilds live client data at several index
// intervals; the result must verify as reproducible with no problem.
func TestKfakeRebuildVerifies(t *testing.T) {
	logs := map[string][]byte{"plain": genPlain(t, 120).log, "batched": genBatched(t).log, "txn": genTxn(t).log}
	for name, log := range logs {
		for _, iv := range []int{0, 1, 333, 4096, 1 << 30} {
			res := rebuildAll(t, log, RebuildOptions{IndexIntervalBytes: iv})
			rep := verify(t, log, SideFiles{Index: res.OffsetIndex, TimeIndex: res.TimeIndex, TxnIndex: res.TxnIndex}, VerifyOptions{IndexIntervalBytes: iv})
			for _, f := range []FileReport{rep.Index, rep.TimeIndex, rep.TxnIndex} {
				if !f.Reproducible || len(f.Problems) != 0 {
					t.Errorf("%s interval %d: %s: %+v", name, iv, f.Name, f)
				}
			}
			if iv == 1<<30 && (len(res.OffsetIndex) != 0 || len(res.TimeIndex) != TimeEntrySize) {
				t.Errorf("%s: huge interval: %d/%d index bytes, want only the final time entry", name, len(res.OffsetIndex), len(res.TimeIndex))
			}
			if res.ValidBytes != int64(len(log)) {
				t.Errorf("%s: valid %d of %d", name, res.ValidBytes, len(log))
			}
		}
	}
}

// TestKfakeTxnIndexChained splits a transactional log inside open
// transactions and rebuilds segment by segment, chaining OpenTxns; the
// aborted transactions equal a whole-log rebuild and kfake's own list (the
// AbortedTransactions of its FetchResponses).
func TestKfakeTxnIndexChained(t *testing.T) {
	sc := genTxn(t)
	whole := rebuildAll(t, sc.log, RebuildOptions{})
	if len(whole.Aborted) == 0 || len(whole.OpenTxns) != 0 {
		t.Fatalf("aborted %v open %v", whole.Aborted, whole.OpenTxns)
	}
	type pf struct{ pid, first int64 }
	var ours, theirs []pf
	for _, a := range whole.Aborted {
		ours = append(ours, pf{a.ProducerID, a.FirstOffset})
		if a.LastStableOffset > a.LastOffset+1 || a.LastStableOffset < 0 {
			t.Errorf("bad lso %+v", a)
		}
	}
	for _, a := range sc.aborted {
		theirs = append(theirs, pf{a.ProducerID, a.FirstOffset})
	}
	slices.SortFunc(theirs, func(a, b pf) int { return int(a.first - b.first) })
	slices.SortFunc(ours, func(a, b pf) int { return int(a.first - b.first) })
	if !slices.Equal(ours, theirs) {
		t.Errorf("aborted (pid, first): ours %v, kfake %v", ours, theirs)
	}

	var chained []AbortedTxn
	var open map[int64]int64
	sawCrossing, sawOpen := false, false
	for i, seg := range splitLog(t, sc.log, sc.split) {
		base := firstOffset(t, seg)
		res := rebuildAll(t, seg, RebuildOptions{BaseOffset: base, OpenTxns: open})
		for _, a := range res.Aborted {
			if a.FirstOffset < base {
				sawCrossing = true
			}
		}
		if len(res.OpenTxns) > 0 {
			sawOpen = true
		}
		chained = append(chained, res.Aborted...)
		// Verified with the chain's OpenTxns it is reproducible; without
		// them a transaction started in an earlier segment is missing from
		// the rebuild, which is a note, never corruption.
		rep := verify(t, seg, SideFiles{TxnIndex: res.TxnIndex}, VerifyOptions{BaseOffset: base, OpenTxns: open})
		if !rep.TxnIndex.Reproducible || rep.TxnIndex.Corrupt {
			t.Errorf("segment %d: %+v", i, rep.TxnIndex)
		}
		rep = verify(t, seg, SideFiles{TxnIndex: res.TxnIndex}, VerifyOptions{BaseOffset: base})
		if rep.TxnIndex.Corrupt || rep.TxnIndex.Rules[RuleAbortMarker] != len(res.Aborted) {
			t.Errorf("segment %d without OpenTxns: %+v", i, rep.TxnIndex)
		}
		open = res.OpenTxns
	}
	if !slices.Equal(chained, whole.Aborted) {
		t.Errorf("chained %v\nwhole %v", chained, whole.Aborted)
	}
	if !sawCrossing || !sawOpen {
		t.Errorf("the scenario should cross segments: crossing %v open %v", sawCrossing, sawOpen)
	}
}

// TestKfakeProducerSnapshot compares the snapshot built from the log with
// kfake's DescribeProducers, and checks that snapshots chain: state at a
// split + the rest = state from scratch.
func TestKfakeProducerSnapshot(t *testing.T) {
	k := newKfake(t, 1)
	a := k.client(kgo.TransactionalID("a"))
	c := k.client()
	ctx := ctxT(t)
	rng := newRng(5)
	for i := 0; i < 4; i++ {
		if err := a.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		k.produceSync(a, kfRecord(rng, 50, kfBase+int64(i)))
		k.produceSync(c, kfRecord(rng, 50, kfBase+int64(i)), kfRecord(rng, 50, kfBase+int64(i)+1))
		if err := a.EndTransaction(ctx, kgo.TransactionEndTry(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.BeginTransaction(); err != nil { // left open
		t.Fatal(err)
	}
	k.produceSync(a, kfRecord(rng, 50, kfBase+99))
	f := k.fetchAll(c)

	snap, end, err := BuildProducerSnapshot(nil, SegmentSource{R: bytes.NewReader(f.log), Size: int64(len(f.log)), Name: "k.log"})
	if err != nil || end != f.hw {
		t.Fatalf("end %d hw %d err %v", end, f.hw, err)
	}
	es, err := DecodeProducerSnapshot("s", snap)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := kadm.NewClient(c).DescribeProducers(ctx, kadm.TopicsSet{kfTopic: {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]ProducerEntry{}
	for _, e := range es {
		byID[e.ProducerID] = e
	}
	n := 0
	desc.EachPartition(func(p kadm.DescribedProducersPartition) {
		for _, dp := range p.ActiveProducers {
			n++
			e, ok := byID[dp.ProducerID]
			if !ok || e.Epoch != dp.ProducerEpoch || e.LastSequence != dp.LastSequence || e.CurrentTxnFirstOffset != dp.CurrentTxnStartOffset {
				t.Errorf("producer %d: ours %+v, kfake %+v", dp.ProducerID, e, dp)
			}
		}
	})
	// kfake describes only some producers (not every idempotent one); each
	// it lists must match ours.
	if n == 0 || len(es) != 2 {
		t.Errorf("kfake lists %d producers, we %d", n, len(es))
	}
	if open := OpenTxnsFromSnapshot(es); len(open) != 1 {
		t.Errorf("open txns %v", open)
	}

	// Chain: snapshot at a split, then the rest.
	segs := splitLog(t, f.log, []int64{7})
	s1, end1, err := BuildProducerSnapshot(nil, SegmentSource{R: bytes.NewReader(segs[0]), Size: int64(len(segs[0])), Name: "0.log"})
	if err != nil || end1 != 7 {
		t.Fatal(end1, err)
	}
	e1, _ := DecodeProducerSnapshot("s1", s1)
	s2, end2, err := BuildProducerSnapshot(ProducerStateFromSnapshot(e1, end1),
		SegmentSource{R: bytes.NewReader(segs[1]), Size: int64(len(segs[1])), Name: "7.log", BaseOffset: 7})
	if err != nil || end2 != end || !bytes.Equal(s2, snap) {
		t.Errorf("chained snapshot differs (end %d, %v)", end2, err)
	}
}

// TestKfakeCutLength cuts multi-record batches at every offset.
func TestKfakeCutLength(t *testing.T) {
	log := genBatched(t).log
	type bt struct{ base, last, end int64 }
	var batches []bt
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "b", segment.ReaderOptions{})
	for r.Next() {
		b := r.Batch()
		batches = append(batches, bt{b.BaseOffset, b.LastOffset(), b.Pos + b.Size()})
	}
	last := batches[len(batches)-1].last
	for cut := int64(0); cut <= last+3; cut++ {
		n, kept, err := CutLength(bytes.NewReader(log), int64(len(log)), "b", 0, cut)
		wantN, wantKept := int64(0), int64(-1)
		for _, b := range batches {
			if b.last <= cut {
				wantN, wantKept = b.end, b.last
			}
		}
		if wantN == 0 {
			if !errors.Is(err, ErrCutBeforeSegment) {
				t.Errorf("cut %d: %v", cut, err)
			}
			continue
		}
		if err != nil || n != wantN || kept != wantKept {
			t.Errorf("cut %d: got (%d, %d, %v), want (%d, %d)", cut, n, kept, err, wantN, wantKept)
		}
		res := rebuildAll(t, log[:n], RebuildOptions{})
		if res.NextOffset != kept+1 || res.ValidBytes != n {
			t.Errorf("cut %d: rebuilt prefix next %d valid %d", cut, res.NextOffset, res.ValidBytes)
		}
	}
}

// TestKfakeLeaderEpochs derives epochs from batches written across
// leadership moves, directly, through Summaries and through Rebuild.
func TestKfakeLeaderEpochs(t *testing.T) {
	log := genEpochs(t).log
	got, err := DeriveLeaderEpochs(nil, SegmentSource{R: bytes.NewReader(log), Size: int64(len(log)), Name: "e"})
	if err != nil || len(got) != 4 {
		t.Fatalf("%v %v", got, err)
	}
	for i, e := range got {
		if e.StartOffset != int64(5*i) || (i > 0 && e.Epoch <= got[i-1].Epoch) {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	sum, err := segment.Scan(bytes.NewReader(log), int64(len(log)), "e", segment.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fs := EpochsFromSummaries(sum); !slices.Equal(fs, got) {
		t.Errorf("summaries %v", fs)
	}
	c := &EpochCache{}
	rebuildAll(t, log, RebuildOptions{LeaderEpochs: c})
	if !slices.Equal(c.Entries(), got) {
		t.Errorf("rebuild %v", c.Entries())
	}
	// A restore of [5, 12) keeps the epochs in force there.
	clip := ClipLeaderEpochs(got, 5, 12)
	if len(clip) != 2 || clip[0] != got[1] || clip[1] != got[2] {
		t.Errorf("clip %v", clip)
	}
}

// leaderIndexes simulates the append path of a Kafka <= 3.6 leader with
// one batch per append: offset entries like recovery, time entries with the
// record-level "offset of max timestamp" for uncompressed batches.
func leaderIndexes(t testing.TB, log []byte, interval int64, recordLevel, firstOffset bool, group int) (idx, tidx []byte) {
	t.Helper()
	var oe []OffsetEntry
	var te []TimeEntry
	maxTs, maxOff := int64(-1), int64(0)
	var since int64
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "l", segment.ReaderOptions{})
	// group > 1 makes multi-batch appends (a follower's fetched chunk).
	var app []segment.Batch
	var raws [][]byte
	flush := func() {
		if len(app) == 0 {
			return
		}
		first, lastB := app[0], app[len(app)-1]
		for i, b := range app {
			ts, off := b.MaxTimestamp, b.LastOffset()
			if recordLevel && group == 1 {
				if rts, roff, ok := RecordMaxTimestamp(&app[i], raws[i]); ok {
					ts, off = rts, roff
				}
			}
			if ts > maxTs {
				maxTs, maxOff = ts, off
			}
		}
		if since > interval {
			o := lastB.LastOffset()
			if firstOffset {
				o = first.BaseOffset
			}
			oe = append(oe, OffsetEntry{Offset: o, Position: int32(first.Pos)})
			if len(te) == 0 || maxTs > te[len(te)-1].Timestamp {
				te = append(te, TimeEntry{Timestamp: maxTs, Offset: maxOff})
			}
			since = 0
		}
		since += lastB.Pos + lastB.Size() - first.Pos
		app, raws = app[:0], raws[:0]
	}
	for r.Next() {
		app = append(app, *r.Batch())
		raws = append(raws, append([]byte(nil), r.Raw()...))
		if len(app) == group {
			flush()
		}
	}
	flush()
	if len(te) == 0 || maxTs > te[len(te)-1].Timestamp {
		te = append(te, TimeEntry{Timestamp: maxTs, Offset: maxOff})
	}
	var err error
	if idx, err = EncodeOffsetIndex(oe, 0); err != nil {
		t.Fatal(err)
	}
	if tidx, err = EncodeTimeIndex(te, 0); err != nil {
		t.Fatal(err)
	}
	return idx, tidx
}

// TestKfakeWriterRules checks that files written by other broker paths
// (<= 3.6 leader record-level time index, <= 1.1 first-offset index,
// follower multi-batch appends) verify as valid, with the rule reported.
func TestKfakeWriterRules(t *testing.T) {
	batched := genBatched(t).log
	plain := genPlain(t, 120).log
	for _, tc := range []struct {
		name         string
		log          []byte
		record       bool
		first        bool
		group        int
		offRule      Rule
		timeRule     Rule
		reproducible bool
	}{
		{"record-level leader <= 3.6", batched, true, false, 1, RuleLastOffset, RuleRecordMax, false},
		{"first-offset <= 1.1", batched, false, true, 1, RuleFirstOffset, RuleBatchMax, false},
		{"follower appends of 4 batches", plain, false, false, 4, RuleMultiBatch, RuleBatchMax, false},
		{"follower appends <= 1.1", batched, false, true, 3, RuleFirstOffset, RuleBatchMax, false},
		{"recovery", plain, false, false, 1, RuleLastOffset, RuleBatchMax, true},
	} {
		idx, tidx := leaderIndexes(t, tc.log, 2000, tc.record, tc.first, tc.group)
		rep := verify(t, tc.log, SideFiles{Index: idx, TimeIndex: tidx}, VerifyOptions{IndexIntervalBytes: 2000})
		if rep.Corrupt() || rep.Index.Rules[tc.offRule] == 0 || rep.TimeIndex.Rules[tc.timeRule] == 0 {
			t.Errorf("%s: index %+v\ntime %+v", tc.name, rep.Index, rep.TimeIndex)
		}
		if rep.Index.Reproducible && rep.TimeIndex.Reproducible != tc.reproducible {
			t.Errorf("%s: reproducible %v/%v", tc.name, rep.Index.Reproducible, rep.TimeIndex.Reproducible)
		}
		// DumpLogSegments' "Mismatches" (offset != lastOffset of the batch
		// at the position) are not corruption here.
		for _, p := range append(rep.Index.Problems, rep.TimeIndex.Problems...) {
			if p.Corrupt {
				t.Errorf("%s: %+v", tc.name, p)
			}
		}
	}
}

// TestRecordMaxHook: a time index whose offsets point at records inside
// compressed batches (as a magic-1 compressed wrapper's entries do) is valid
// but unverifiable without decompression; a caller-supplied RecordMax
// resolves it, and a wrong offset is then caught.
func TestRecordMaxHook(t *testing.T) {
	f, sent := genBatchedTruth(t)
	log := f.log
	// Per batch: the producer's max timestamp and its first offset.
	type recMax struct{ ts, off int64 }
	truth := map[int64]recMax{}
	r0 := segment.NewReader(bytes.NewReader(log), int64(len(log)), "b", segment.ReaderOptions{})
	for r0.Next() {
		b := r0.Batch()
		m := recMax{ts: -1}
		for o := b.BaseOffset; o <= b.LastOffset(); o++ {
			if ts, ok := sent[o]; ok && ts > m.ts {
				m = recMax{ts, o}
			}
		}
		truth[b.BaseOffset] = m
	}
	var te []TimeEntry
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "b", segment.ReaderOptions{})
	compressedInside := 0
	for r.Next() {
		b := r.Batch()
		m := truth[b.BaseOffset]
		if m.ts != b.MaxTimestamp {
			t.Fatalf("batch %d: client max %d, batch header %d", b.BaseOffset, m.ts, b.MaxTimestamp)
		}
		if len(te) == 0 || m.ts > te[len(te)-1].Timestamp {
			te = append(te, TimeEntry{Timestamp: m.ts, Offset: m.off})
			if b.Codec() != segment.CodecNone && m.off != b.LastOffset() {
				compressedInside++
			}
		}
	}
	if compressedInside == 0 {
		t.Fatal("scenario has no record-level entry inside a compressed batch")
	}
	tidx, err := EncodeTimeIndex(te, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := verify(t, log, SideFiles{TimeIndex: tidx}, VerifyOptions{})
	if rep.TimeIndex.Rules[RuleUnverified] != compressedInside || rep.TimeIndex.Corrupt {
		t.Errorf("without hook: %+v", rep.TimeIndex)
	}
	hook := func(r *segment.Reader) (int64, int64, bool) {
		m, ok := truth[r.Batch().BaseOffset]
		return m.ts, m.off, ok
	}
	rep = verify(t, log, SideFiles{TimeIndex: tidx}, VerifyOptions{RecordMax: hook})
	if rep.TimeIndex.Rules[RuleUnverified] != 0 || rep.TimeIndex.Rules[RuleRecordMax] == 0 || rep.TimeIndex.Corrupt {
		t.Errorf("with hook: %+v", rep.TimeIndex)
	}
	// Point one record-level entry at the wrong record: now it is caught.
	for i, e := range te {
		if e.Offset > 0 && i > 0 && te[i-1].Offset < e.Offset-1 {
			bad := clone(tidx)
			put32(bad, i*12+8, int32(e.Offset-1))
			_, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "b.log", SideFiles{TimeIndex: bad}, VerifyOptions{RecordMax: hook})
			var ie *IndexError
			if !errors.As(err, &ie) || ie.Check != CheckTimestamp || ie.Entry != i {
				t.Errorf("wrong record offset at entry %d: %v", i, err)
			}
			break
		}
	}
}
