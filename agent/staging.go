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
type staging struct {
	root   string
	budget int64
	mu     sync.Mutex
	used   int64
	off    map[string]string // log dir -> why staging is off for it
}

func newStaging(stateDir string, budget int64) (*staging, error) {
	s := &staging{root: filepath.Join(stateDir, "staging"), budget: budget, off: map[string]string{}}
	if budget == 0 {
		return s, nil
	}
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	s.used = dirBytes(s.root)
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

// Used is the bytes held by staging links.
func (s *staging) Used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// stage links c's files. It returns false (and why) when c is not protected.
func (s *staging) stage(c *candidate) (bool, string, error) {
	if s.budget == 0 {
		return false, "staging disabled", nil
	}
	var size int64
	for _, f := range c.Files {
		size += f.Size
	}
	s.mu.Lock()
	if why := s.off[c.LogDir]; why != "" {
		s.mu.Unlock()
		return false, why, nil
	}
	if s.used+size > s.budget {
		s.mu.Unlock()
		return false, fmt.Sprintf("staging budget of %d bytes exhausted", s.budget), nil
	}
	s.used += size
	s.mu.Unlock()
	d := s.dir(c)
	if err := os.MkdirAll(d, 0o750); err != nil {
		s.release(size)
		return false, "", err
	}
	for _, f := range c.Files {
		dst := filepath.Join(d, f.Name)
		err := os.Link(c.path(f.Name), dst)
		if errors.Is(err, os.ErrExist) {
			// A link left by an earlier version of this segment (a cleaner
			// swap keeps the name): replace it unless it is this very file.
			if same, _ := sameInode(c.path(f.Name), dst); same {
				continue
			}
			os.Remove(dst)
			err = os.Link(c.path(f.Name), dst)
		}
		if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) {
			why := fmt.Sprintf("state dir is not on the log dir's filesystem, or links are not permitted (%v)", err)
			s.mu.Lock()
			s.off[c.LogDir] = why
			s.mu.Unlock()
			s.unstage(c)
			return false, why, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.unstage(c)
			return false, "", fmt.Errorf("stage %s: %w", f.Name, err)
		}
	}
	meta, _ := json.Marshal(c)
	if err := fsutil.WriteFileAtomic(filepath.Join(d, s.metaName(c)), meta, 0o640); err != nil {
		s.unstage(c)
		return false, "", err
	}
	return true, "", nil
}

func (s *staging) release(n int64) {
	s.mu.Lock()
	s.used -= n
	s.mu.Unlock()
}

// unstage removes c's links.
func (s *staging) unstage(c *candidate) {
	if s.budget == 0 {
		return
	}
	d := s.dir(c)
	var freed int64
	for _, f := range c.Files {
		p := filepath.Join(d, f.Name)
		if fi, err := os.Stat(p); err == nil {
			if os.Remove(p) == nil {
				freed += fi.Size()
			}
		}
	}
	os.Remove(filepath.Join(d, s.metaName(c)))
	os.Remove(d) // only if empty
	s.release(freed)
}

// orphans returns staged candidates whose partition dir no longer holds
// their .log (deleted by retention, or the whole topic deleted).
func (s *staging) orphans() []candidate {
	if s.budget == 0 {
		return nil
	}
	var out []candidate
	metas, _ := filepath.Glob(filepath.Join(s.root, "*", "*", "*.candidate.json"))
	for _, m := range metas {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var c candidate
		if json.Unmarshal(data, &c) != nil || len(c.Files) == 0 {
			continue
		}
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

func dirBytes(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".json") {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
