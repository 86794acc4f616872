package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// h31View is the part of the tail state that must survive a restart.
func h31View(t *testing.T, st *tailState) string {
	t.Helper()
	b, err := json.Marshal(struct {
		NextSeq int64
		Tracks  map[string]*tailTrack
		Pending *tailPending
	}{st.NextSeq, st.Tracks, st.Pending})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// h31Track is a realistic track: real paths, headers and SHA-256 state.
func h31Track(rng *rand.Rand, k string, to int64) *tailTrack {
	tr := &tailTrack{LogDir: "/var/lib/kafka/data", Path: "/var/lib/kafka/data/" + k, Topic: k[:strings.LastIndexByte(k, '-')],
		Partition: int32(rng.Intn(64))}
	tr.reset(int64(rng.Intn(1<<20)), uint64(rng.Int63()))
	h := sha256.New()
	buf := make([]byte, 64+rng.Intn(200))
	rng.Read(buf)
	h.Write(buf)
	tr.To = to
	if err := tr.setHash(h); err != nil {
		panic(err)
	}
	tr.FirstHdr = fmt.Sprintf("%042x", rng.Uint64())
	tr.LastHdr = fmt.Sprintf("%042x", rng.Uint64())
	tr.LastPos, tr.LastOffset, tr.LastEpoch = to-100, rng.Int63n(1<<40), int32(rng.Intn(50))
	tr.StateSum = fmt.Sprintf("%064x", rng.Uint64())
	return tr
}

func h31Load(t *testing.T, dir string) *tailState {
	t.Helper()
	st, fresh, err := loadTailState(dir)
	if err != nil || fresh {
		t.Fatalf("load %s: fresh %v, err %v", dir, fresh, err)
	}
	return st
}

// h31Round is one capture round as the tailer makes it: some tracks
// change (new, changed in place by a clone, dropped), a capture of some
// of them is made pending (fsynced), then commits (adopt) or is abandoned.
func h31Round(rng *rand.Rand, st *tailState, keys []string, changing int) error {
	for i := 0; i < rng.Intn(3); i++ {
		k := keys[rng.Intn(len(keys))]
		if _, ok := st.Tracks[k]; ok && rng.Intn(2) == 0 {
			st.dropTrack(k)
		} else {
			st.setTrack(k, h31Track(rng, k, 0))
		}
	}
	if changing == 0 {
		return st.save(true)
	}
	p := &tailPending{Seq: st.NextSeq, UploadID: newUploadID(), ManifestKey: "m", PackKey: "p", ClusterID: "c", BrokerID: 1,
		Tracks: map[string]*tailTrack{}}
	for i := 0; i < changing; i++ {
		k := keys[rng.Intn(len(keys))]
		p.Tracks[k] = h31Track(rng, k, int64(1000+rng.Intn(1<<20)))
	}
	st.begin(p)
	st.NextSeq++
	if err := st.save(true); err != nil {
		return err
	}
	switch rng.Intn(5) {
	case 0: // a failed pack PUT
		st.abandon()
		return st.save(false)
	case 1: // a failed manifest PUT: settled in the next round
		return nil
	}
	st.adopt()
	return st.save(false)
}

func h31Keys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("topic-%d-%d", i%37, i)
	}
	return keys
}

// TestH31JournalReplayRandom: after every save of random rounds (and
// compactions, forced often by low bounds), loading the files gives the
// in-memory state.
func TestH31JournalReplayRandom(t *testing.T) {
	if n := reflect.TypeOf(tailTrack{}).NumField(); n != 15 {
		t.Fatalf("tailTrack has %d fields: update tailTrack.same", n)
	}
	for seed := int64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewSource(seed))
		dir := t.TempDir()
		st, fresh, err := loadTailState(dir)
		if err != nil || !fresh {
			t.Fatal(fresh, err)
		}
		st.jr.minBytes, st.jr.maxRecords = 4<<10, 7+int(seed)
		st.NextSeq = 1
		keys := h31Keys(60)
		for _, k := range keys[:40] {
			st.setTrack(k, h31Track(rng, k, 0))
		}
		if err := st.save(false); err != nil {
			t.Fatal(err)
		}
		compactions := 0
		for r := 0; r < 200; r++ {
			if st.Pending != nil { // settle as the next round would
				if rng.Intn(2) == 0 {
					st.adopt()
				} else {
					st.abandon()
				}
			}
			gen := st.Gen
			if err := h31Round(rng, st, keys, rng.Intn(6)); err != nil {
				t.Fatal(err)
			}
			if st.Gen != gen {
				compactions++
			}
			got := h31Load(t, dir)
			if h31View(t, got) != h31View(t, st) {
				t.Fatalf("seed %d round %d: replayed state differs from the in-memory one", seed, r)
			}
		}
		if compactions < 10 {
			t.Fatalf("seed %d: %d compactions", seed, compactions)
		}
	}
}

// TestH31JournalCrashAtEveryByte: the journal cut at every byte (a kill
// -9 or a lost unsynced write at any moment) loads as the state after the
// last whole record, with the torn record counted, never as anything
// else; the next save after such a load compacts and drops the torn bytes.
func TestH31JournalCrashAtEveryByte(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	dir := t.TempDir()
	st, _, _ := loadTailState(dir)
	st.NextSeq = 1
	keys := h31Keys(12)
	for _, k := range keys {
		st.setTrack(k, h31Track(rng, k, 0))
	}
	if err := st.save(true); err != nil { // the snapshot
		t.Fatal(err)
	}
	jp := filepath.Join(dir, tailJournalFile)
	ends := []int{0}
	views := []string{h31View(t, st)}
	for r := 0; r < 12; r++ {
		if st.Pending != nil {
			st.adopt()
		}
		if err := h31Round(rng, st, keys, 1+rng.Intn(3)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(jp)
		if err != nil {
			t.Fatal(err)
		}
		if int(fi.Size()) > ends[len(ends)-1] {
			ends, views = append(ends, int(fi.Size())), append(views, h31View(t, st))
		}
	}
	full, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	if len(ends) < 10 {
		t.Fatalf("only %d journal states", len(ends))
	}
	// The records between two stats hold states not kept here: compare only
	// at cuts whose last whole record is one of the kept ends.
	cdir := t.TempDir()
	snap, _ := os.ReadFile(filepath.Join(dir, tailStateFile))
	checked := 0
	for cut := 0; cut <= len(full); cut++ {
		last := bytes.LastIndexByte(full[:cut], '\n') + 1
		want := -1
		for i, e := range ends {
			if e == last {
				want = i
			}
		}
		if want < 0 {
			continue
		}
		os.WriteFile(filepath.Join(cdir, tailStateFile), snap, 0o640)
		os.WriteFile(filepath.Join(cdir, tailJournalFile), full[:cut], 0o640)
		got := h31Load(t, cdir)
		if h31View(t, got) != views[want] {
			t.Fatalf("journal cut at byte %d: loaded state is not the one after its last whole record (byte %d)", cut, last)
		}
		if torn := cut != last; (got.jr.torn == 1) != torn || (torn && got.jr.tornAt != int64(last)) {
			t.Fatalf("cut at %d: torn %d at %d, want torn %v at %d", cut, got.jr.torn, got.jr.tornAt, torn, last)
		}
		if cut != last && cut%7 == 0 {
			// Go on from the torn state: the next save compacts.
			got.setTrack(keys[0], h31Track(rng, keys[0], 5))
			if err := got.save(true); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(filepath.Join(cdir, tailJournalFile)); fi.Size() != 0 {
				t.Fatalf("cut at %d: the torn journal was not emptied by the next save", cut)
			}
			if h31View(t, h31Load(t, cdir)) != h31View(t, got) {
				t.Fatalf("cut at %d: state after the torn load's save differs", cut)
			}
		}
		checked++
	}
	if checked < 1000 {
		t.Fatalf("only %d cuts checked", checked)
	}
	// A bad record followed by good ones is not a torn tail: unusable.
	bad := append([]byte(nil), full...)
	bad[ends[2]+3] ^= 0x20
	os.WriteFile(filepath.Join(cdir, tailStateFile), snap, 0o640)
	os.WriteFile(filepath.Join(cdir, tailJournalFile), bad, 0o640)
	if _, fresh, err := loadTailState(cdir); !fresh || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("byte %d", ends[2])) {
		t.Fatalf("bad record mid-journal: fresh %v err %v", fresh, err)
	}
	// A journal without its snapshot is not a state.
	os.Remove(filepath.Join(cdir, tailStateFile))
	os.WriteFile(filepath.Join(cdir, tailJournalFile), full, 0o640)
	if _, fresh, _ := loadTailState(cdir); !fresh {
		t.Fatal("journal without a snapshot loaded as a state")
	}
}

// TestH31JournalCompaction: the journal is folded into a snapshot when it
// passes 4x the snapshot (or the record bound); a crash between the new
// snapshot and the journal's truncation leaves records of the old gen,
// which are skipped, not applied again.
func TestH31JournalCompaction(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	dir := t.TempDir()
	st, _, _ := loadTailState(dir)
	st.jr.minBytes = 0
	st.NextSeq = 1
	keys := h31Keys(50)
	for _, k := range keys {
		st.setTrack(k, h31Track(rng, k, 0))
	}
	if err := st.save(true); err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(dir, tailJournalFile)
	snapSize := st.jr.snapSize
	var before []byte
	compacted := false
	for r := 0; r < 400 && !compacted; r++ {
		before, _ = os.ReadFile(jp)
		gen := st.Gen
		if err := h31Round(rng, st, keys, 2); err != nil {
			t.Fatal(err)
		}
		if st.Pending != nil {
			st.adopt()
			if err := st.save(false); err != nil {
				t.Fatal(err)
			}
		}
		if st.Gen != gen {
			compacted = true
			if int64(len(before)) > 4*snapSize+64<<10 || int64(len(before)) < 3*snapSize {
				t.Fatalf("compacted at a journal of %d bytes, snapshot %d", len(before), snapSize)
			}
		}
	}
	if !compacted {
		t.Fatal("never compacted")
	}
	if fi, _ := os.Stat(jp); fi.Size() > 64<<10 {
		t.Fatalf("journal of %d bytes after compaction", fi.Size())
	}
	want := h31View(t, st)
	if h31View(t, h31Load(t, dir)) != want {
		t.Fatal("state after compaction differs")
	}
	// Crash after the new snapshot's rename, before the truncation.
	for r := 0; r < 3; r++ {
		st.setTrack(keys[r], h31Track(rng, keys[r], 7))
		if err := st.save(false); err != nil {
			t.Fatal(err)
		}
	}
	before, _ = os.ReadFile(jp)
	want = h31View(t, st)
	if err := st.compact(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jp, before, 0o640); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+tailStateFile+".tmp-12345") // a crash inside WriteFileAtomic
	if err := os.WriteFile(tmp, []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}
	got := h31Load(t, dir)
	if _, err := os.Stat(tmp); err == nil {
		t.Fatal("snapshot temp file left by a crash not removed")
	}
	if h31View(t, got) != want || got.jr.skipped == 0 || got.jr.torn != 0 {
		t.Fatalf("stale journal: state differs %v, skipped %d, torn %d", h31View(t, got) != want, got.jr.skipped, got.jr.torn)
	}
	// The record bound.
	st.jr.minBytes, st.jr.maxRecords = 1<<30, 5
	gen := st.Gen
	for r := 0; r < 5; r++ {
		st.setTrack(keys[r], h31Track(rng, keys[r], 9))
		if err := st.save(false); err != nil {
			t.Fatal(err)
		}
	}
	if st.Gen == gen {
		t.Fatal("no compaction at the record bound")
	}
}

// TestH31TailStateBytesFigures: bytes written per round for 2,000 and
// 10,000 partitions with 1% of them captured per round, before (the whole
// tail-state.json, written twice per capture round) and after (one journal
// record fsynced, one small commit record, compactions amortized).
func TestH31TailStateBytesFigures(t *testing.T) {
	for _, parts := range []int{2000, 10000} {
		rng := rand.New(rand.NewSource(int64(parts)))
		dir := t.TempDir()
		st, _, _ := loadTailState(dir)
		st.NextSeq = 1
		keys := h31Keys(parts)
		for _, k := range keys {
			st.setTrack(k, h31Track(rng, k, int64(1000+rng.Intn(1<<20))))
		}
		if err := st.save(true); err != nil {
			t.Fatal(err)
		}
		old := st.jr.snapSize // the version-1 file is the same JSON without "gen"
		const rounds = 1000   // past at least one compaction
		w0, f0, gen := st.jr.wrote, st.jr.fsyncs, st.Gen
		var maxRound int64
		for r := 0; r < rounds; r++ {
			w := st.jr.wrote
			p := &tailPending{Seq: st.NextSeq, UploadID: newUploadID(), ManifestKey: "v2/clusters/c/brokers/1/tails/x.json",
				PackKey: "v2/clusters/c/brokers/1/tails/x.pack", ClusterID: "c", BrokerID: 1, Tracks: map[string]*tailTrack{}}
			for i := 0; i < parts/100; i++ {
				k := keys[rng.Intn(parts)]
				nt := st.Tracks[k].clone()
				nt.To += 300
				nt.LastPos += 300
				p.Tracks[k] = nt
			}
			st.begin(p)
			st.NextSeq++
			if err := st.save(true); err != nil {
				t.Fatal(err)
			}
			st.adopt()
			if err := st.save(false); err != nil {
				t.Fatal(err)
			}
			if d := st.jr.wrote - w; d < old {
				maxRound = max(maxRound, d)
			}
		}
		if st.Gen == gen {
			t.Fatal("no compaction in the rounds: the figure would not include it")
		}
		per := (st.jr.wrote - w0) / rounds
		t.Logf("tail state, %d partitions, %d (1%%) captured per round: before %d bytes written per round (2 x %d, 2 fsyncs); after %d bytes per round amortized (largest round without compaction %d bytes, %.1f fsyncs per round with compactions), %.1f%% of before",
			parts, parts/100, 2*old, old, per, maxRound, float64(st.jr.fsyncs-f0)/rounds, 100*float64(per)/float64(2*old))
		if per*20 > 2*old {
			t.Errorf("%d partitions: %d bytes per round, more than 5%% of the %d before", parts, per, 2*old)
		}
		if h31View(t, h31Load(t, dir)) != h31View(t, st) {
			t.Fatal("replayed state differs")
		}
	}
}

// TestH31JournalWriteFailure: a failed append is reported and the next
// save writes a snapshot of the whole state (the journal may hold part of
// the failed record); nothing of the failed save is lost.
func TestH31JournalWriteFailure(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	dir := t.TempDir()
	st, _, _ := loadTailState(dir)
	st.NextSeq = 1
	keys := h31Keys(10)
	for _, k := range keys {
		st.setTrack(k, h31Track(rng, k, 0))
	}
	if err := st.save(true); err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(dir, tailJournalFile)
	if err := os.Remove(jp); err != nil {
		t.Fatal(err)
	}
	st.setTrack(keys[1], h31Track(rng, keys[1], 77))
	if err := st.save(true); err == nil || !strings.Contains(err.Error(), jp) {
		t.Fatalf("append to a missing journal: %v", err)
	}
	gen := st.Gen
	st.dropTrack(keys[2])
	if err := st.save(true); err != nil {
		t.Fatal(err)
	}
	if st.Gen == gen {
		t.Fatal("no snapshot after the failed append")
	}
	if got := h31Load(t, dir); h31View(t, got) != h31View(t, st) || got.Tracks[keys[1]].To != 77 {
		t.Fatal("state after the failed append differs")
	}
}
