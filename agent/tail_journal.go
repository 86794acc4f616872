package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/segvault/segvault/internal/fsutil"
)

// The tail state's journal (see tailState). A record is applied in this
// order: Adopt, Drop, Set, Pending/Clear, NextSeq.
type tailRecord struct {
	Gen     string                `json:"g"`
	NextSeq int64                 `json:"next_seq"`
	Adopt   *tailRef              `json:"adopt,omitempty"` // the pending capture committed: its tracks are the tracks
	Drop    []string              `json:"drop,omitempty"`
	Set     map[string]*tailTrack `json:"set,omitempty"`
	Pending *tailPending          `json:"pending,omitempty"` // a capture now pending
	Clear   bool                  `json:"clear,omitempty"`   // no capture pending any more
}

// tailRef names a pending capture.
type tailRef struct {
	Seq      int64  `json:"seq"`
	UploadID string `json:"upload_id"`
}

const (
	tailJournalMaxRecords = 10000
	tailJournalMinBytes   = 1 << 20 // no compaction below this journal size
)

// tailJournal is what the state files hold, as far as this process knows.
type tailJournal struct {
	dir string
	// ok: the snapshot has Gen and the journal only whole records, so a
	// record can be appended; otherwise the next save compacts.
	ok       bool
	size     int64 // journal bytes
	records  int
	snapSize int64
	dirty    map[string]bool // tracks changed since the last save
	saved    *tailPending    // the pending capture as the files have it
	savedSeq int64
	adopted  *tailPending // adopted since the last save
	// Bounds (fields so tests can lower them).
	maxRecords int
	minBytes   int64
	// What the load found and what saves wrote.
	torn     int   // records ignored at the journal's end
	tornAt   int64 // byte position of the first one
	skipped  int   // records of another gen
	migrated bool  // a version-1 file was read
	wrote    int64 // bytes written to the journal and snapshots
	fsyncs   int
}

func newTailState(stateDir string) *tailState {
	return &tailState{Version: tailStateVersion, Tracks: map[string]*tailTrack{},
		jr: &tailJournal{dir: stateDir, dirty: map[string]bool{}, maxRecords: tailJournalMaxRecords, minBytes: tailJournalMinBytes}}
}

func (j *tailJournal) snapPath() string    { return filepath.Join(j.dir, tailStateFile) }
func (j *tailJournal) journalPath() string { return filepath.Join(j.dir, tailJournalFile) }

// loadTailState reads the state (snapshot, then the journal's records of
// its gen); fresh is true when there was none usable. err explains an
// unusable state (the returned state is then a fresh one).
func loadTailState(stateDir string) (st *tailState, fresh bool, err error) {
	st = newTailState(stateDir)
	j := st.jr
	sweepTailTemp(stateDir)
	sp := j.snapPath()
	data, err := os.ReadFile(sp)
	if errors.Is(err, os.ErrNotExist) {
		return st, true, nil
	}
	if err != nil {
		return st, true, fmt.Errorf("read %s: %w", sp, err)
	}
	s := newTailState(stateDir)
	if json.Unmarshal(data, s) != nil || (s.Version != tailStateVersion && s.Version != 1) || s.NextSeq < 1 ||
		(s.Version == tailStateVersion && s.Gen == "") {
		return st, true, fmt.Errorf("%s: unreadable or of another version; tail chains start again from byte 0", sp)
	}
	if s.Tracks == nil {
		s.Tracks = map[string]*tailTrack{}
	}
	j = s.jr
	j.snapSize = int64(len(data))
	if s.Version == 1 {
		// The whole state rewritten every round: no journal goes with it
		// (one left by a newer agent before a downgrade is not of it).
		s.Version, s.Gen, j.migrated = tailStateVersion, "", true
	} else if err := s.replay(); err != nil {
		return st, true, err
	} else {
		j.ok = j.torn == 0
	}
	for k, t := range s.Tracks {
		if _, err := t.hasher(); err != nil {
			c := t.clone()
			c.reset(t.Base, t.Ino)
			s.Tracks[k] = c
			j.dirty[k] = true
		}
	}
	j.saved, j.savedSeq = s.Pending, s.NextSeq
	return s, false, nil
}

// replay applies the journal's records of the snapshot's gen.
func (st *tailState) replay() error {
	j := st.jr
	jp := j.journalPath()
	data, err := os.ReadFile(jp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", jp, err)
	}
	pos := 0
	for pos < len(data) {
		n := bytes.IndexByte(data[pos:], '\n')
		line := data[pos:]
		if n >= 0 {
			line = data[pos : pos+n+1]
		}
		rec, perr := parseTailRecord(line)
		if perr == nil && rec.Gen != st.Gen {
			j.skipped++ // folded into the snapshot already
			pos += len(line)
			continue
		}
		if perr == nil {
			perr = st.apply(rec)
		}
		if perr != nil {
			if n < 0 || pos+len(line) == len(data) {
				// The last record, torn by a crash mid-append: it was
				// never fsynced, so nothing relied on it.
				j.torn, j.tornAt = 1, int64(pos)
				return nil
			}
			return fmt.Errorf("%s: bad record at byte %d (%v) followed by more records: tail chains start again from byte 0", jp, pos, perr)
		}
		j.records++
		pos += len(line)
		j.size = int64(pos)
	}
	return nil
}

func parseTailRecord(line []byte) (*tailRecord, error) {
	if len(line) == 0 || line[len(line)-1] != '\n' {
		return nil, errors.New("torn: no end of line")
	}
	sum, body, ok := strings.Cut(string(line[:len(line)-1]), " ")
	if !ok || fmt.Sprintf("%08x", crc32.Checksum([]byte(body), crcTable)) != sum {
		return nil, errors.New("crc32c mismatch")
	}
	var rec tailRecord
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		return nil, fmt.Errorf("bad json: %w", err)
	}
	return &rec, nil
}

// apply applies one record.
func (st *tailState) apply(rec *tailRecord) error {
	if a := rec.Adopt; a != nil {
		p := st.Pending
		if p == nil || p.Seq != a.Seq || p.UploadID != a.UploadID {
			return fmt.Errorf("adopts capture seq %d upload %s, which is not the pending one", a.Seq, a.UploadID)
		}
		for k, tr := range p.Tracks {
			st.Tracks[k] = tr
		}
		st.Pending = nil
	}
	for _, k := range rec.Drop {
		delete(st.Tracks, k)
	}
	for k, tr := range rec.Set {
		if tr == nil {
			return fmt.Errorf("track %s: null", k)
		}
		st.Tracks[k] = tr
	}
	if rec.Pending != nil {
		st.Pending = rec.Pending
	} else if rec.Clear {
		st.Pending = nil
	}
	if rec.NextSeq < 1 {
		return fmt.Errorf("next_seq %d", rec.NextSeq)
	}
	st.NextSeq = rec.NextSeq
	return nil
}

// setTrack records tr as the track of k (tr is not changed afterwards:
// change a clone).
func (st *tailState) setTrack(k string, tr *tailTrack) {
	st.Tracks[k] = tr
	st.markDirty(k)
}

// markDirty notes k for the next journal record; an in-memory state (tail
// capture off: tracks are only observed) has no journal.
func (st *tailState) markDirty(k string) {
	if st.jr != nil {
		st.jr.dirty[k] = true
	}
}

// dropTrack forgets the track of k.
func (st *tailState) dropTrack(k string) {
	delete(st.Tracks, k)
	st.markDirty(k)
}

// begin records p as the pending capture.
func (st *tailState) begin(p *tailPending) { st.Pending = p }

// adopt makes the pending capture's tracks the tracks (it committed).
func (st *tailState) adopt() {
	p := st.Pending
	if p == nil {
		return
	}
	for k, tr := range p.Tracks {
		st.setTrack(k, tr)
	}
	if st.jr != nil {
		st.jr.adopted = p
	}
	st.Pending = nil
}

// abandon drops the pending capture (it never commits).
func (st *tailState) abandon() { st.Pending = nil }

// save appends the changes since the last save to the journal, fsynced
// when sync is set (the caller relies on them being durable), and compacts
// when the journal is past its bound. Without a usable journal it writes a
// snapshot.
func (st *tailState) save(sync bool) error {
	j := st.jr
	if !j.ok {
		return st.compact()
	}
	rec := tailRecord{Gen: st.Gen, NextSeq: st.NextSeq}
	if a := j.adopted; a != nil && a == j.saved {
		rec.Adopt = &tailRef{Seq: a.Seq, UploadID: a.UploadID}
	}
	for k := range j.dirty {
		tr, ok := st.Tracks[k]
		switch {
		case !ok:
			rec.Drop = append(rec.Drop, k)
		case rec.Adopt != nil && j.adopted.Tracks[k] == tr:
			// as the adopted capture has it
		default:
			if rec.Set == nil {
				rec.Set = map[string]*tailTrack{}
			}
			rec.Set[k] = tr
		}
	}
	sort.Strings(rec.Drop)
	if st.Pending != j.saved {
		if st.Pending != nil {
			rec.Pending = st.Pending
		} else {
			rec.Clear = true
		}
	}
	if rec.Adopt == nil && rec.Drop == nil && rec.Set == nil && rec.Pending == nil && !rec.Clear && st.NextSeq == j.savedSeq {
		return nil
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%08x %s\n", crc32.Checksum(body, crcTable), body)
	jp := j.journalPath()
	f, err := os.OpenFile(jp, os.O_WRONLY|os.O_APPEND, 0o640)
	if err == nil {
		_, err = f.WriteString(line)
		if err == nil && sync {
			err = f.Sync()
			j.fsyncs++
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		// The journal may now end with a part of the record: the next save
		// writes a snapshot instead.
		j.ok = false
		return fmt.Errorf("append to tail state journal %s at byte %d: %w", jp, j.size, err)
	}
	j.size += int64(len(line))
	j.records++
	j.wrote += int64(len(line))
	j.saved, j.savedSeq, j.adopted = st.Pending, st.NextSeq, nil
	clear(j.dirty)
	if j.size > max(4*j.snapSize, j.minBytes) || j.records >= j.maxRecords {
		// The record is written (and durable when asked): a failed
		// compaction leaves j.ok false, so the next save compacts again and
		// reports its error.
		_ = st.compact()
	}
	return nil
}

// compact writes the whole state as a snapshot of a new gen, then empties
// the journal. A crash in between leaves records of the old gen, skipped.
func (st *tailState) compact() error {
	j := st.jr
	j.ok = false
	gen := newUploadID()
	snap := *st
	snap.Version, snap.Gen, snap.jr = tailStateVersion, gen, nil
	data, err := json.Marshal(&snap)
	if err != nil {
		return err
	}
	sp := j.snapPath()
	if err := fsutil.WriteFileAtomic(sp, data, 0o640); err != nil {
		return fmt.Errorf("write tail state %s: %w", sp, err)
	}
	j.wrote += int64(len(data))
	j.fsyncs += 2
	st.Version, st.Gen = tailStateVersion, gen
	j.snapSize, j.saved, j.savedSeq, j.adopted = int64(len(data)), st.Pending, st.NextSeq, nil
	clear(j.dirty)
	jp := j.journalPath()
	f, err := os.OpenFile(jp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("empty tail state journal %s: %w", jp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("empty tail state journal %s: %w", jp, err)
	}
	if err := fsutil.SyncDir(j.dir); err != nil {
		return fmt.Errorf("sync %s: %w", j.dir, err)
	}
	j.fsyncs++
	j.ok, j.size, j.records = true, 0, 0
	return nil
}

// sweepTailTemp removes the snapshot's temp files a crash left behind.
func sweepTailTemp(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "."+tailStateFile+".tmp-") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
