package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestH31TailStateMigration: a version-1 tail-state.json (the whole state
// rewritten every round, as the agent wrote it before the journal) is read
// on the first start: the chain continues from it (same prev hash, no
// bytes captured twice), a journal found beside it is not applied, and the
// first save writes the version-2 snapshot and a journal.
func TestH31TailStateMigration(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(10)
	_, caps, _ := e.round()
	e.a.Close()
	st := h31Load(t, e.state)
	v1, err := json.Marshal(map[string]any{"version": 1, "next_seq": st.NextSeq, "tracks": st.Tracks})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.state, tailStateFile), v1, 0o640); err != nil {
		t.Fatal(err)
	}
	// A journal of some other life (say, before a downgrade) beside it,
	// whose record would move the chain on: it must not be applied.
	other := *st
	other.Tracks = map[string]*tailTrack{}
	other.jr = &tailJournal{dir: e.state, ok: true, dirty: map[string]bool{}, maxRecords: 100, minBytes: 1 << 20}
	for k, tr := range st.Tracks {
		c := tr.clone()
		c.To += 1000
		other.setTrack(k, c)
	}
	if err := os.WriteFile(filepath.Join(e.state, tailJournalFile), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := other.save(true); err != nil {
		t.Fatal(err)
	}
	e.open()
	e.w.batches(5)
	chains, caps2, _ := e.round() // h25Chains: no gap, no overlap
	c := caps2[len(caps2)-1]
	if c.c.From != int64(e.w.bounds[9]) || c.c.PrevSHA256 != caps[0].c.SHA256 || c.seq != caps[0].seq+1 {
		t.Fatalf("after the migration: capture [%d,%d) seq %d prev %s; want from %d, seq %d, prev %s",
			c.c.From, c.c.To, c.seq, c.c.PrevSHA256, e.w.bounds[9], caps[0].seq+1, caps[0].c.SHA256)
	}
	if string(chains["status-0"]) != string(e.file()) {
		t.Fatal("chain is not the file")
	}
	var snap struct {
		Version int    `json:"version"`
		Gen     string `json:"gen"`
	}
	data, _ := os.ReadFile(filepath.Join(e.state, tailStateFile))
	if json.Unmarshal(data, &snap) != nil || snap.Version != tailStateVersion || snap.Gen == "" {
		t.Fatalf("snapshot not migrated: %.100s", data)
	}
	got := h31Load(t, e.state)
	if h31View(t, got) != h31View(t, e.tl.st) {
		t.Fatal("migrated state reloads differently")
	}
}

// TestH31TailTornJournalRestart: a crash mid-append (the journal ends
// with part of a record) restarts from the state before it, with a
// counted warning; the chain continues, nothing is captured twice.
func TestH31TailTornJournalRestart(t *testing.T) {
	e := h25Setup(t, h25StatusLog)
	e.w.batches(5)
	e.round()
	e.w.batches(5)
	_, caps, _ := e.round()
	e.a.Close()
	jp := filepath.Join(e.state, tailJournalFile)
	j, err := os.ReadFile(jp)
	if err != nil || len(j) == 0 {
		t.Fatalf("journal %s: %d bytes, %v", jp, len(j), err)
	}
	torn := append(j, []byte(`1234abcd {"g":"x","next_seq":99,"set":{"status`)...)
	if err := os.WriteFile(jp, torn, 0o640); err != nil {
		t.Fatal(err)
	}
	e.open()
	before := h25Counter(e.a.metrics.TailFailures.WithLabelValues("state"))
	e.w.batches(5)
	chains, caps2, _ := e.round()
	if h25Counter(e.a.metrics.TailFailures.WithLabelValues("state")) != before+1 {
		t.Fatal("torn journal record not counted")
	}
	last, prev := caps2[len(caps2)-1], caps[len(caps)-1]
	if last.c.From != prev.c.To || last.c.PrevSHA256 != prev.c.SHA256 || last.seq != prev.seq+1 {
		t.Fatalf("after the torn journal: capture from %d seq %d; want from %d seq %d", last.c.From, last.seq, prev.c.To, prev.seq+1)
	}
	if string(chains["status-0"]) != string(e.file()) {
		t.Fatal("chain is not the file")
	}
	if fi, _ := os.Stat(jp); fi.Size() >= int64(len(torn)) {
		t.Fatal("torn bytes still in the journal after the next save")
	}
}
