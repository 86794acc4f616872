package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
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
	Kind     string // uploader.KindSegment or uploader.KindKRaftSnapshot
	Base     int64
	Epoch    int32 // KRaft snapshot epoch
	NextBase int64 // base of the following segment, -1 for an active segment until read
	Active   bool  // the partition's last segment (IncludeActive)
	Files    []fileStat
}

func (c *candidate) key() string {
	return fmt.Sprintf("%s|%s|%s|%020d|%d", c.LogDir, c.Dir.String(), c.Kind, c.Base, c.Epoch)
}

func (c *candidate) path(name string) string { return filepath.Join(c.DirPath, name) }

// partitionScan is what one scan saw in a partition dir.
type partitionScan struct {
	LogDir     string
	Path       string
	Dir        segment.DirName
	Candidates []candidate
	Active     int64 // base offset of the active segment, -1 if none
	Unstable   string
}

// scanPartition lists one partition dir. Segments below the active one are
// candidates once their indexes are trimmed; a dir in the middle of a
// compaction swap (.cleaned or .swap files) yields none until it is done.
func scanPartition(logDir string, dn segment.DirName, path string, includeActive bool) (partitionScan, error) {
	ps := partitionScan{LogDir: logDir, Path: path, Dir: dn, Active: -1}
	ents, err := os.ReadDir(path)
	if err != nil {
		return ps, err
	}
	var bases []int64
	type snap struct {
		off   int64
		epoch int32
	}
	var snaps []snap
	var producerSnaps []int64
	for _, e := range ents {
		n, ok := segment.ParseFileName(e.Name())
		if !ok {
			continue
		}
		switch {
		case n.Suffix == segment.SuffixCleaned || n.Suffix == segment.SuffixSwap:
			ps.Unstable = "compaction swap in progress (" + e.Name() + ")"
		case n.Suffix != "":
		case n.Kind == segment.KindLog:
			bases = append(bases, n.BaseOffset)
		case n.Kind == segment.KindSnapshot:
			producerSnaps = append(producerSnaps, n.BaseOffset)
		case n.Kind == segment.KindCheckpoint && dn.Topic == MetadataTopic:
			snaps = append(snaps, snap{n.BaseOffset, n.Epoch})
		}
	}
	if ps.Unstable != "" {
		return ps, nil
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) > 0 {
		ps.Active = bases[len(bases)-1]
	}
	for i := 0; i+1 < len(bases); i++ {
		c := candidate{LogDir: logDir, DirPath: path, Dir: dn, Kind: "segment", Base: bases[i], NextBase: bases[i+1]}
		ok, err := c.collect()
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
		ok, err := c.collectActive(snapAt)
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

// collect stats a rolled segment's files. It returns false when the segment
// is not settled yet (an index still zero-padded) or vanished meanwhile.
func (c *candidate) collect() (bool, error) {
	names := []string{
		segment.FormatName(c.Base, segment.KindLog),
		segment.FormatName(c.Base, segment.KindIndex),
		segment.FormatName(c.Base, segment.KindTimeIndex),
		segment.FormatName(c.Base, segment.KindTxnIndex),
		segment.FormatName(c.Base, segment.KindSnapshot),     // producer state at the segment's start
		segment.FormatName(c.NextBase, segment.KindSnapshot), // and at its end (written at the roll)
	}
	for i, n := range names {
		fs, err := statFile(c.path(n))
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
			trimmed, err := indexTrimmed(c.path(n), fs.Size, []int64{8, 12}[i-1])
			if err != nil || !trimmed {
				return false, err
			}
		}
		c.Files = append(c.Files, fs)
	}
	return true, nil
}

// collectActive stats a stopped broker's last segment. Index files still
// zero-padded (an unclean stop) are left out: restore rebuilds them.
func (c *candidate) collectActive(snapAt int64) (bool, error) {
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
		fs, err := statFile(c.path(n))
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
			trimmed, err := indexTrimmed(c.path(n), fs.Size, []int64{8, 12}[i-1])
			if err != nil {
				return false, err
			}
			if !trimmed {
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
	f, err := os.Open(filepath.Join(logDir, ".lock"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != syscall.F_UNLCK, nil
}

// indexTrimmed reports whether an index file looks trimmed (Kafka trims on
// roll): a whole number of entries and a non-zero last entry. A zero-padded
// preallocated file means the segment has not finished rolling.
func indexTrimmed(path string, size, entry int64) (bool, error) {
	if size%entry != 0 {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	last := make([]byte, entry)
	if _, err := f.ReadAt(last, size-entry); err != nil && err != io.EOF {
		return false, err
	}
	return !bytes.Equal(last, make([]byte, entry)), nil
}

// scanLogDir lists the partition dirs of a log dir that the filter admits.
// Renamed dirs (-delete, -future, -stray) are skipped: their data was (or
// will be) archived under the live name.
func scanLogDir(logDir string, filter topicFilter, includeActive bool) ([]partitionScan, error) {
	ents, err := os.ReadDir(logDir)
	if err != nil {
		return nil, fmt.Errorf("read log dir: %w", err)
	}
	var out []partitionScan
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dn, ok := segment.ParseDirName(e.Name())
		if !ok || dn.Suffix != "" || !filter.match(dn.Topic) {
			continue
		}
		ps, err := scanPartition(logDir, dn, filepath.Join(logDir, e.Name()), includeActive)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted while we looked
			}
			return nil, fmt.Errorf("scan %s: %w", e.Name(), err)
		}
		out = append(out, ps)
	}
	return out, nil
}
