package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segvault/segvault/internal/fsutil"
)

// staging protects rolled, not-yet-archived segments from Kafka's retention:
// each file gets a hard link under StateDir/staging on the same filesystem,
// so a delete by the broker only removes its name. Links are dropped once
// the segment is committed. A budget bounds the bytes held this way; beyond
// it a segment is not protected and, if Kafka deletes it first, it is
// recorded as lost.
//
// Layout: staging/<logdir key>/<partition dir>/<files> plus
// <kind>-<base>-<epoch>.candidate.json, which lets a restarted agent resume
// a segment whose original is already gone.
//
// The bytes held are what is on disk: files maps each link path to its
// size, filled by walking the staging dir (at start and on every Used), so
// a link that already exists (a restart re-staging the same segment) is
// never counted twice.
type staging struct {
	root   string
	budget int64
	mu     sync.Mutex
	files  map[string]int64  // staged link path -> size
	off    map[string]string // log dir -> why staging is off for it
	metas  map[string]stagedMeta
}

// stagedMeta caches a parsed .candidate.json by its size and mtime.
type stagedMeta struct {
	size int64
	mod  time.Time
	c    candidate
}

func newStaging(stateDir string, budget int64) (*staging, error) {
	s := &staging{root: filepath.Join(stateDir, "staging"), budget: budget, off: map[string]string{}, files: map[string]int64{}, metas: map[string]stagedMeta{}}
	if budget == 0 {
		return s, nil
	}
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	s.files = stagedFiles(s.root)
	return s, nil
}

func logDirKey(logDir string) string {
	h := sha256.Sum256([]byte(filepath.Clean(logDir)))
	return hex.EncodeToString(h[:6])
}

func (s *staging) dir(c *candidate) string {
	return filepath.Join(s.root, logDirKey(c.LogDir), c.Dir.String())
}

func (s *staging) metaName(c *candidate) string {
	return fmt.Sprintf("%s-%020d-%d.candidate.json", c.Kind, c.Base, c.Epoch)
}

// path is where a staged copy of name would be ("" when staging is off).
func (s *staging) path(c *candidate, name string) string {
	if s.budget == 0 {
		return ""
	}
	return filepath.Join(s.dir(c), name)
}

// Used is the bytes held by staging links, counted again from disk.
func (s *staging) Used() int64 {
	if s.budget == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = stagedFiles(s.root)
	return s.usedLocked()
}

func (s *staging) usedLocked() int64 {
	var n int64
	for _, size := range s.files {
		n += size
	}
	return n
}

// stage links c's files. It returns false (and why) when c is not protected.
func (s *staging) stage(c *candidate) (bool, string, error) {
	if s.budget == 0 {
		return false, "staging disabled", nil
	}
	d := s.dir(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if why := s.off[c.LogDir]; why != "" {
		return false, why, nil
	}
	var need int64 // beyond what links already there hold
	for _, f := range c.Files {
		need += f.Size - s.files[filepath.Join(d, f.Name)]
	}
	if s.usedLocked()+need > s.budget {
		return false, fmt.Sprintf("staging budget of %d bytes exhausted", s.budget), nil
	}
	if err := os.MkdirAll(d, 0o750); err != nil {
		return false, "", err
	}
	for _, f := range c.Files {
		dst := filepath.Join(d, f.Name)
		if fi, err := os.Lstat(c.path(f.Name)); err == nil && !fi.Mode().IsRegular() {
			// link(2) refuses a directory with EPERM: that is this file's
			// problem (the upload refuses it too), not the filesystem's.
			s.unstageLocked(c)
			return false, fmt.Sprintf("%s is not a regular file (%s)", c.path(f.Name), fi.Mode().Type()), nil
		}
		err := os.Link(c.path(f.Name), dst)
		if errors.Is(err, os.ErrExist) {
			// A link left by an earlier version of this segment (a cleaner
			// swap keeps the name): replace it unless it is this very file.
			if same, _ := sameInode(c.path(f.Name), dst); same {
				s.account(dst)
				continue
			}
			os.Remove(dst)
			err = os.Link(c.path(f.Name), dst)
		}
		if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) {
			why := fmt.Sprintf("state dir is not on the log dir's filesystem, or links are not permitted (%v)", err)
			s.off[c.LogDir] = why
			s.unstageLocked(c)
			return false, why, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.unstageLocked(c)
			return false, "", fmt.Errorf("stage %s: %w", f.Name, err)
		}
		if err == nil {
			s.account(dst)
		}
	}
	meta, _ := json.Marshal(c)
	if err := fsutil.WriteFileAtomic(filepath.Join(d, s.metaName(c)), meta, 0o640); err != nil {
		s.unstageLocked(c)
		return false, "", err
	}
	return true, "", nil
}

// account records the size a link now holds on disk (s.mu held).
func (s *staging) account(p string) {
	if fi, err := os.Stat(p); err == nil {
		s.files[p] = fi.Size()
	} else {
		delete(s.files, p)
	}
}

// unstage removes c's links.
func (s *staging) unstage(c *candidate) {
	if s.budget == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unstageLocked(c)
}

func (s *staging) unstageLocked(c *candidate) {
	d := s.dir(c)
	// A producer snapshot belongs to two adjacent segments (the state at the
	// end of one is the state at the start of the next): a link another
	// staged candidate of the partition still names stays.
	shared := map[string]bool{}
	own := s.metaName(c)
	metas, _ := filepath.Glob(filepath.Join(d, "*.candidate.json"))
	for _, m := range metas {
		if filepath.Base(m) == own {
			continue
		}
		var other candidate
		if data, err := os.ReadFile(m); err == nil && json.Unmarshal(data, &other) == nil {
			for _, f := range other.Files {
				shared[f.Name] = true
			}
		}
	}
	for _, f := range c.Files {
		if shared[f.Name] {
			continue
		}
		p := filepath.Join(d, f.Name)
		if err := os.Remove(p); err == nil || errors.Is(err, os.ErrNotExist) {
			delete(s.files, p)
		}
	}
	os.Remove(filepath.Join(d, s.metaName(c)))
	os.Remove(d) // only if empty
}

// candidates returns every staged candidate (from its .candidate.json).
func (s *staging) candidates() []candidate {
	if s.budget == 0 {
		return nil
	}
	var out []candidate
	metas, _ := filepath.Glob(filepath.Join(s.root, "*", "*", "*.candidate.json"))
	s.mu.Lock()
	defer s.mu.Unlock()
	cache := make(map[string]stagedMeta, len(metas))
	for _, m := range metas {
		fi, err := os.Stat(m)
		if err != nil {
			continue
		}
		sm, ok := s.metas[m]
		if !ok || sm.size != fi.Size() || !sm.mod.Equal(fi.ModTime()) {
			data, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			var c candidate
			if json.Unmarshal(data, &c) != nil || len(c.Files) == 0 {
				continue
			}
			sm = stagedMeta{size: fi.Size(), mod: fi.ModTime(), c: c}
		}
		cache[m] = sm
		out = append(out, sm.c)
	}
	s.metas = cache
	return out
}

// orphans returns staged candidates whose partition dir no longer holds
// their .log (deleted by retention, or the whole topic deleted).
func (s *staging) orphans() []candidate {
	var out []candidate
	for _, c := range s.candidates() {
		if _, err := os.Stat(c.path(c.Files[0].Name)); err == nil {
			continue // still live: the normal scan has it
		}
		out = append(out, c)
	}
	return out
}

func sameInode(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// stagedFiles walks the staging dir: every staged link and its size
// (candidate metadata and temp files are not counted).
func stagedFiles(root string) map[string]int64 {
	out := map[string]int64{}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, ".json") && !strings.HasPrefix(d.Name(), ".") {
			if fi, err := d.Info(); err == nil {
				out[p] = fi.Size()
			}
		}
		return nil
	})
	return out
}
