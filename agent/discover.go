package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/internal/kafkadir"
	"github.com/segvault/segvault/segment"
)

// MetadataTopic is KRaft's metadata log (KafkaRaftServer.MetadataTopic).
const MetadataTopic = "__cluster_metadata"

// BrokerIdentity is who wrote a log dir.
type BrokerIdentity struct {
	ClusterID   string
	BrokerID    int32
	DirectoryID string
}

// ReadServerProperties returns log.dirs (or log.dir) and node.id (or
// broker.id, -1 if absent) from a broker's server.properties.
func ReadServerProperties(path string) (dirs []string, nodeID int32, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, -1, fmt.Errorf("read server properties: %w", err)
	}
	p := index.ParseProperties(data)
	v := p["log.dirs"]
	if v == "" {
		v = p["log.dir"]
	}
	if v == "" {
		v = "/tmp/kafka-logs" // Kafka's default log.dir
	}
	for _, d := range strings.Split(v, ",") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	nodeID = -1
	for _, k := range []string{"node.id", "broker.id"} {
		if s := p[k]; s != "" {
			n, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return nil, -1, fmt.Errorf("%s: bad %s %q", path, k, s)
			}
			nodeID = int32(n)
			break
		}
	}
	return dirs, nodeID, nil
}

// ReadIdentity reads a log dir's meta.properties. Missing cluster or broker
// ids are taken from the overrides; it is an error if they stay unknown.
func ReadIdentity(logDir, clusterOverride string, brokerOverride int32) (BrokerIdentity, error) {
	id := BrokerIdentity{ClusterID: clusterOverride, BrokerID: brokerOverride}
	path := filepath.Join(logDir, index.MetaPropertiesFile)
	data, err := fsutil.ReadFileRegular(path)
	switch {
	case err == nil:
		m, err := index.ParseMetaProperties(path, data)
		if err != nil {
			return id, err
		}
		if id.ClusterID == "" {
			id.ClusterID = m.ClusterID
		}
		if id.BrokerID < 0 {
			id.BrokerID = m.NodeID
		}
		id.DirectoryID = m.DirectoryID
	case errors.Is(err, os.ErrNotExist):
	default:
		return id, fmt.Errorf("read %s: %w", path, err)
	}
	if id.ClusterID == "" {
		return id, fmt.Errorf("%s: no cluster.id in meta.properties (ZooKeeper-era broker?): set --cluster-id", logDir)
	}
	if segment.ValidateTopic(id.ClusterID) != nil {
		return id, fmt.Errorf("%s: cluster id %q is not usable in object keys", logDir, id.ClusterID)
	}
	if id.BrokerID < 0 {
		return id, fmt.Errorf("%s: no node.id/broker.id in meta.properties: set --broker-id", logDir)
	}
	return id, nil
}

// fileStat identifies a file's content without reading it.
type fileStat struct {
	Name  string    `json:"name"`
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
	Ino   uint64    `json:"ino"`
	// Src is the file's name on disk when it differs from Name, the name it
	// is archived under: a salvaged cleaner swap's N.log.swap is N.log.
	Src string `json:"-"`
}

// src is the file's name on disk.
func (f fileStat) src() string {
	if f.Src != "" {
		return f.Src
	}
	return f.Name
}

func statFile(path string) (fileStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}, err
	}
	fs := fileStat{Name: filepath.Base(path), Size: fi.Size(), MTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fs.Ino = st.Ino
	}
	return fs, nil
}

// candidate is an immutable segment (or KRaft snapshot) ready to consider.
type candidate struct {
	LogDir   string
	DirPath  string
	Dir      segment.DirName
	Kind     string // archive.KindSegment or archive.KindKRaftSnapshot
	Base     int64
	Epoch    int32 // KRaft snapshot epoch
	NextBase int64 // base of the following segment, -1 for an active segment until read
	Active   bool  // the partition's last segment (IncludeActive)
	Files    []fileStat
	// SettleWait names why a rolled segment's files are not settled (an
	// index with a zero-filled tail): it is archived without them after a
	// bounded wait. Empty when settled.
	SettleWait string
}

func (c *candidate) key() string {
	return fmt.Sprintf("%s|%s|%s|%020d|%d", c.LogDir, c.Dir.String(), c.Kind, c.Base, c.Epoch)
}

// fromSwap reports whether a file is read from a cleaner-swap name.
func (c *candidate) fromSwap() bool {
	for _, f := range c.Files {
		if f.Src != "" {
			return true
		}
	}
	return false
}

func (c *candidate) path(name string) string { return filepath.Join(c.DirPath, name) }

// partitionScan is what one scan saw in a partition dir.
type partitionScan struct {
	LogDir     string
	Path       string
	Dir        segment.DirName
	Candidates []candidate
	Active     int64 // base offset of the active segment, -1 if none
	// Unstable describes a log-cleaner swap in progress (.cleaned or .swap
	// files); empty when there is none.
	Unstable string
}

// scanPartition lists one partition dir. Segments below the active one are
// candidates; one whose indexes are not trimmed yet carries a SettleWait
// reason. A log-cleaner swap in progress (.cleaned or .swap files) holds
// back only the segments it covers; when includeActive (a stopped broker)
// the dir is read as Kafka's LogLoader would load it (resolveSwap).
func scanPartition(logDir string, dn segment.DirName, path string, includeActive bool) (partitionScan, error) {
	ps := partitionScan{LogDir: logDir, Path: path, Dir: dn, Active: -1}
	ents, err := os.ReadDir(path)
	if err != nil {
		return ps, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	view, held, unstable, err := resolveSwap(path, names, includeActive)
	if err != nil {
		return ps, err
	}
	ps.Unstable = unstable
	var bases []int64
	type snap struct {
		off   int64
		epoch int32
	}
	var snaps []snap
	var producerSnaps []int64
	for name := range view {
		n, ok := segment.ParseFileName(name)
		if !ok {
			continue
		}
		switch {
		case n.Suffix != "":
		case n.Kind == segment.KindLog:
			bases = append(bases, n.BaseOffset)
		case n.Kind == segment.KindSnapshot:
			producerSnaps = append(producerSnaps, n.BaseOffset)
		case n.Kind == segment.KindCheckpoint && dn.Topic == MetadataTopic:
			snaps = append(snaps, snap{n.BaseOffset, n.Epoch})
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].off < snaps[j].off })
	if len(bases) > 0 {
		ps.Active = bases[len(bases)-1]
	}
	for i := 0; i+1 < len(bases); i++ {
		if held(bases[i]) {
			continue // a pending swap replaces it
		}
		c := candidate{LogDir: logDir, DirPath: path, Dir: dn, Kind: "segment", Base: bases[i], NextBase: bases[i+1]}
		ok, err := c.collect(view)
		if err != nil {
			return ps, err
		}
		if ok {
			ps.Candidates = append(ps.Candidates, c)
		}
	}
	if includeActive && len(bases) > 0 {
		// A stopped broker's last segment: NextBase is only known once it is
		// read (ship sets it from the Summary); its producer snapshot is the
		// newest one above its base (the log end at shutdown).
		c := candidate{LogDir: logDir, DirPath: path, Dir: dn, Kind: "segment", Base: ps.Active, NextBase: -1, Active: true}
		var snapAt int64 = -1
		for _, o := range producerSnaps {
			if o >= c.Base && o > snapAt {
				snapAt = o
			}
		}
		ok, err := c.collectActive(view, snapAt)
		if err != nil {
			return ps, err
		}
		if ok {
			ps.Candidates = append(ps.Candidates, c)
		}
	}
	for _, s := range snaps {
		c := candidate{LogDir: logDir, DirPath: path, Dir: dn, Kind: "kraft-snapshot", Base: s.off, Epoch: s.epoch, NextBase: s.off}
		fs, err := statFile(c.path(segment.FileName{BaseOffset: s.off, Epoch: s.epoch, Kind: segment.KindCheckpoint}.String()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return ps, err
		}
		c.Files = []fileStat{fs}
		ps.Candidates = append(ps.Candidates, c)
	}
	return ps, nil
}

// resolveSwap maps the names a partition dir holds to the files a segment
// is read from: view[final name] = name on disk. With no .cleaned or .swap
// file that is every name as is.
//
// For a stopped broker (salvage) it is what Kafka's LogLoader would load
// (kafka-format.md section 5): every .cleaned file is discarded, and with
// it every .swap file at or above the lowest .cleaned offset (an incomplete
// swap); each remaining N.log.swap covers [N, its next offset), and every
// non-swap file in [lowest swap base, highest swap end) is dropped; then
// the .swap files stand for their final names.
//
// For a live broker the swap is in progress: the .cleaned and .swap files
// are ignored, and held reports the segments a swap covers (those Kafka is
// about to replace), which wait until the swap is done. unstable describes
// the swap, empty when there is none.
func resolveSwap(dir string, names []string, salvage bool) (view map[string]string, held func(int64) bool, unstable string, err error) {
	view = map[string]string{}
	held = func(int64) bool { return false }
	minCleaned := int64(math.MaxInt64)
	var swaps, temp []string
	for _, name := range names {
		n, ok := segment.ParseFileName(name)
		switch {
		case ok && n.Suffix == segment.SuffixCleaned:
			minCleaned = min(minCleaned, n.BaseOffset)
			temp = append(temp, name)
		case ok && n.Suffix == segment.SuffixSwap:
			swaps = append(swaps, name)
			temp = append(temp, name)
		default:
			view[name] = name
		}
	}
	if len(temp) == 0 {
		return view, held, "", nil
	}
	sort.Strings(temp)
	unstable = "log-cleaner swap in progress (" + strings.Join(temp, ", ") + ")"
	// The offsets the swaps cover: Kafka reads [base, next offset) of each
	// N.log.swap. Live, every .log.swap counts (the cleaner is renaming);
	// salvage, only those below the lowest .cleaned offset.
	lo, hi := int64(math.MaxInt64), int64(-1)
	var valid []string
	for _, name := range swaps {
		n, _ := segment.ParseFileName(name)
		if salvage && n.BaseOffset >= minCleaned {
			continue
		}
		valid = append(valid, name)
		if n.Kind != segment.KindLog {
			continue
		}
		next, err := swapNextOffset(filepath.Join(dir, name), n.BaseOffset)
		if err != nil {
			if salvage {
				return nil, nil, unstable, err
			}
			next = n.BaseOffset + 1 // unreadable while it is renamed: hold back its own segment
		}
		lo, hi = min(lo, n.BaseOffset), max(hi, next, n.BaseOffset+1)
	}
	covered := func(off int64) bool { return off >= lo && off < hi }
	if !salvage {
		return view, covered, unstable, nil
	}
	for name := range view {
		if n, ok := segment.ParseFileName(name); ok && n.Suffix == "" && n.Kind != segment.KindCheckpoint && covered(n.BaseOffset) {
			delete(view, name)
		}
	}
	for _, name := range valid {
		view[strings.TrimSuffix(name, segment.SuffixSwap)] = name
	}
	return view, held, unstable, nil
}

// swapNextOffset reads a .log.swap file (shallow checks) and returns the
// offset after its last batch, base when it holds none.
func swapNextOffset(path string, base int64) (int64, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	sum, err := segment.Scan(f, fi.Size(), path, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: base}})
	if err != nil {
		return 0, fmt.Errorf("interrupted cleaner swap: %w", err)
	}
	if sum.LastOffset < 0 {
		return base, nil
	}
	return sum.LastOffset + 1, nil
}

// stat stats a file of the candidate by its final name through view (see
// resolveSwap); a name view lacks does not exist.
func (c *candidate) stat(view map[string]string, name string) (fileStat, error) {
	src, ok := view[name]
	if !ok {
		return fileStat{}, &os.PathError{Op: "stat", Path: c.path(name), Err: os.ErrNotExist}
	}
	fs, err := statFile(c.path(src))
	if err != nil {
		return fs, err
	}
	fs.Name = name
	if src != name {
		fs.Src = src
	}
	return fs, nil
}

// Reasons a rolled segment's files have not settled (SettleWait).
const (
	waitIndexZeroTail    = "index_zero_tail"    // the last .index/.timeindex entry is zeros (preallocated, not trimmed)
	waitIndexPartialSlot = "index_partial_slot" // the size is not a whole number of entries
)

// collect stats a rolled segment's files. It returns false when the
// segment vanished meanwhile. An index that is not trimmed yet (Kafka trims
// at the roll; an unclean stop can leave it zero-padded) is left out and
// the reason is kept in SettleWait: the agent waits a bounded time for it,
// then archives without it and restore rebuilds it as Kafka's recovery does.
func (c *candidate) collect(view map[string]string) (bool, error) {
	names := []string{
		segment.FormatName(c.Base, segment.KindLog),
		segment.FormatName(c.Base, segment.KindIndex),
		segment.FormatName(c.Base, segment.KindTimeIndex),
		segment.FormatName(c.Base, segment.KindTxnIndex),
		segment.FormatName(c.Base, segment.KindSnapshot),     // producer state at the segment's start
		segment.FormatName(c.NextBase, segment.KindSnapshot), // and at its end (written at the roll)
	}
	for i, n := range names {
		fs, err := c.stat(view, n)
		if errors.Is(err, os.ErrNotExist) {
			if i == 0 {
				return false, nil // deleted by retention meanwhile
			}
			continue
		}
		if err != nil {
			return false, err
		}
		if (i == 1 || i == 2) && fs.Size > 0 {
			why, err := indexUnsettled(c.path(fs.src()), fs.Size, []int64{8, 12}[i-1])
			if err != nil {
				return false, err
			}
			if why != "" {
				if c.SettleWait == "" {
					c.SettleWait = why
				}
				continue
			}
		}
		c.Files = append(c.Files, fs)
	}
	return true, nil
}

// collectActive stats a stopped broker's last segment. Index files still
// zero-padded (an unclean stop) are left out: restore rebuilds them.
func (c *candidate) collectActive(view map[string]string, snapAt int64) (bool, error) {
	names := []string{
		segment.FormatName(c.Base, segment.KindLog),
		segment.FormatName(c.Base, segment.KindIndex),
		segment.FormatName(c.Base, segment.KindTimeIndex),
		segment.FormatName(c.Base, segment.KindTxnIndex),
	}
	if snapAt >= 0 {
		names = append(names, segment.FormatName(snapAt, segment.KindSnapshot))
	}
	for i, n := range names {
		fs, err := c.stat(view, n)
		if errors.Is(err, os.ErrNotExist) {
			if i == 0 {
				return false, nil
			}
			continue
		}
		if err != nil {
			return false, err
		}
		if (i == 1 || i == 2) && fs.Size > 0 {
			why, err := indexUnsettled(c.path(fs.src()), fs.Size, []int64{8, 12}[i-1])
			if err != nil {
				return false, err
			}
			if why != "" {
				continue
			}
		}
		c.Files = append(c.Files, fs)
	}
	return true, nil
}

// brokerHoldsLock reports whether a process holds Kafka's lock on logDir
// (Kafka takes a POSIX lock on <logdir>/.lock while it runs). It only
// tests the lock (F_GETLK), never takes it, so it cannot block a broker.
func brokerHoldsLock(logDir string) (bool, error) {
	return kafkadir.LockHeld(logDir)
}

// indexUnsettled reports why an index file does not look trimmed (Kafka
// trims on roll), empty when it does: a whole number of entries and a
// non-zero last entry. A zero-padded preallocated file means the segment
// has not finished rolling, or the broker stopped uncleanly. A file that
// vanished meanwhile counts as settled (the caller sees it gone).
func indexUnsettled(path string, size, entry int64) (string, error) {
	if size%entry != 0 {
		return waitIndexPartialSlot, nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	defer f.Close()
	last := make([]byte, entry)
	if _, err := f.ReadAt(last, size-entry); err != nil && err != io.EOF {
		return "", err
	}
	if bytes.Equal(last, make([]byte, entry)) {
		return waitIndexZeroTail, nil
	}
	return "", nil
}

// scanLogDir lists the partition dirs of a log dir that the filter admits.
// Renamed dirs (-delete, -future, -stray) are skipped: their data was (or
// will be) archived under the live name. The error joins the log dir's and
// every unreadable partition dir's; the partitions read are returned still.
func scanLogDir(logDir string, filter topicFilter, includeActive bool) ([]partitionScan, error) {
	out, failed, err := scanLogDirIsolated(logDir, filter, includeActive)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range failed {
		errs = append(errs, e)
	}
	return out, errors.Join(errs...)
}

// scanLogDirIsolated is scanLogDir with errors isolated per partition: a
// partition dir that cannot be read is reported in failed (by its path) and
// the others are still scanned; err is for the log dir itself.
func scanLogDirIsolated(logDir string, filter topicFilter, includeActive bool) (out []partitionScan, failed map[string]error, err error) {
	ents, err := os.ReadDir(logDir)
	if err != nil {
		return nil, nil, fmt.Errorf("read log dir: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dn, ok := segment.ParseDirName(e.Name())
		if !ok || dn.Suffix != "" || !filter.match(dn.Topic) {
			continue
		}
		path := filepath.Join(logDir, e.Name())
		ps, err := scanPartition(logDir, dn, path, includeActive)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted while we looked
			}
			if failed == nil {
				failed = map[string]error{}
			}
			failed[path] = fmt.Errorf("scan partition dir %s: %w", path, err)
			continue
		}
		out = append(out, ps)
	}
	return out, failed, nil
}

// resolveLogDirs makes each log dir absolute and clean, resolves symlinks
// where the dir exists, and drops repeats: one dir under several spellings
// is one log dir (its key in the bucket derives from the path).
func resolveLogDirs(dirs []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("log dir %q: %w", d, err)
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		abs = filepath.Clean(abs)
		if !seen[abs] {
			seen[abs] = true
			out = append(out, abs)
		}
	}
	return out, nil
}
