package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segvault/segvault/internal/fsutil"
)

// State records which segment versions this agent has committed (or found
// corrupt), keyed by candidate key, with the file identities (size, mtime,
// inode) they had. It is an optimisation and a record, not the truth: the
// bucket is. Lost or corrupt state is rebuilt from the bucket's manifests.
//
// On disk (StateDir/state/):
//
//	snapshot.json  {"version":1,"entries":{key: entry}} written tmp+fsync+rename
//	journal        one line per change: "<crc32c hex> <json entry>\n", fsynced
//
// Load reads the snapshot then replays the journal, stopping at the first
// torn or bad line (a crash mid-append). Compact folds the journal into a
// new snapshot. Bump stateVersion for incompatible changes; Load then
// discards the old state and the agent rebuilds it from the bucket.
type State struct {
	dir     string
	mu      sync.Mutex
	entries map[string]stateEntry
	journal *os.File
	appends int
}

const stateVersion = 1

type stateEntry struct {
	Key      string     `json:"key"`
	Status   string     `json:"status"` // archived, corrupt, lost
	Files    []fileStat `json:"files,omitempty"`
	Manifest string     `json:"manifest,omitempty"`
	Detail   string     `json:"detail,omitempty"`
	At       time.Time  `json:"at"`
	Delete   bool       `json:"delete,omitempty"` // journal only: forget Key
	// Gap marker of a lost segment still to be written to the bucket.
	GapKey  string `json:"gap_key,omitempty"`
	GapBody []byte `json:"gap_body,omitempty"`
}

const (
	statusArchived = "archived"
	statusCorrupt  = "corrupt"
	statusLost     = "lost"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// OpenState loads (or creates) the state under dir.
func OpenState(dir string) (*State, bool, error) {
	s := &State{dir: filepath.Join(dir, "state"), entries: map[string]stateEntry{}}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, false, fmt.Errorf("create state dir: %w", err)
	}
	sweepTemp(s.dir)
	fresh := true
	if data, err := os.ReadFile(filepath.Join(s.dir, "snapshot.json")); err == nil {
		var snap struct {
			Version int                   `json:"version"`
			Entries map[string]stateEntry `json:"entries"`
		}
		if json.Unmarshal(data, &snap) == nil && snap.Version == stateVersion && snap.Entries != nil {
			s.entries, fresh = snap.Entries, false
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("read state: %w", err)
	}
	jp := filepath.Join(s.dir, "journal")
	if data, err := os.ReadFile(jp); err == nil {
		good := 0
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			if len(line) == 0 || line[len(line)-1] != '\n' {
				break
			}
			sum, body, ok := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
			var e stateEntry
			if !ok || fmt.Sprintf("%08x", crc32.Checksum([]byte(body), crcTable)) != sum || json.Unmarshal([]byte(body), &e) != nil {
				break
			}
			fresh = false
			s.apply(e)
			good += len(line)
		}
		if good != len(data) { // drop the torn tail so appends stay parseable
			if err := os.Truncate(jp, int64(good)); err != nil {
				return nil, false, fmt.Errorf("trim state journal: %w", err)
			}
		}
	}
	if err := s.Compact(); err != nil {
		return nil, false, err
	}
	return s, fresh, nil
}

func (s *State) apply(e stateEntry) {
	if e.Delete {
		delete(s.entries, e.Key)
		return
	}
	s.entries[e.Key] = e
}

// Get returns the entry for a candidate key.
func (s *State) Get(key string) (stateEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	return e, ok
}

// PendingGaps returns the lost entries whose gap marker is not yet in the bucket.
func (s *State) PendingGaps() []stateEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stateEntry
	for _, e := range s.entries {
		if e.Status == statusLost && e.GapKey != "" {
			out = append(out, e)
		}
	}
	return out
}

// Len is the number of entries.
func (s *State) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Put records an entry durably (journal append + fsync) before returning.
func (s *State) Put(e stateEntry) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%08x %s\n", crc32.Checksum(body, crcTable), body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.journal.WriteString(line); err != nil {
		return fmt.Errorf("write state journal: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("sync state journal: %w", err)
	}
	s.apply(e)
	s.appends++
	if s.appends >= 10000 {
		return s.compactLocked()
	}
	return nil
}

// Compact writes a snapshot of all entries and empties the journal.
func (s *State) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compactLocked()
}

func (s *State) compactLocked() error {
	data, err := json.Marshal(map[string]any{"version": stateVersion, "entries": s.entries})
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(s.dir, "snapshot.json"), data, 0o640); err != nil {
		return fmt.Errorf("write state snapshot: %w", err)
	}
	if s.journal != nil {
		s.journal.Close()
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "journal"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open state journal: %w", err)
	}
	s.journal, s.appends = f, 0
	return fsutil.SyncDir(s.dir)
}

// Close flushes a final snapshot.
func (s *State) Close() error {
	err := s.Compact()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal != nil {
		err = errors.Join(err, s.journal.Close())
		s.journal = nil
	}
	return err
}

// sweepTemp removes temp files a crash left behind.
func sweepTemp(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Delete forgets an entry durably.
func (s *State) Delete(key string) error {
	return s.Put(stateEntry{Key: key, Delete: true})
}

// Entries returns a copy of every entry.
func (s *State) Entries() []stateEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]stateEntry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	return out
}

// ErrStateDirLocked: another agent holds the state dir.
var ErrStateDirLocked = errors.New("state dir is in use by another segvault agent")

// lockFileName is the lock file in the state dir; it holds the holder's pid.
const lockFileName = "agent.lock"

// lockStateDir takes an exclusive flock on StateDir/agent.lock (created if
// needed) and writes this process's pid into it. Another holder makes it
// fail at once with ErrStateDirLocked naming that holder's pid. The lock
// lasts until the returned file is closed (or the process ends).
func lockStateDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	p := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		holder := "unknown pid"
		for i := 0; i < 10; i++ { // the holder may be writing its pid right now
			if b, _ := os.ReadFile(p); len(bytes.TrimSpace(b)) > 0 {
				holder = "pid " + string(bytes.TrimSpace(b))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil, fmt.Errorf("%w: %s is locked by %s (two agents must not share a --state-dir)", ErrStateDirLocked, p, holder)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
	}
	return f, nil
}
