package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/segment"
)

// MetadataTopicID is the fixed topic id of __cluster_metadata.
const MetadataTopicID = "AAAAAAAAAAAAAAAAAAAAAQ"

// openedFile is one file of a candidate, held open for the whole upload so
// that a retention rename (.deleted) or delete meanwhile cannot take it away.
type openedFile struct {
	stat fileStat
	f    *os.File
	res  residency
}

// openCandidate opens every file of c: from the partition dir, else its
// .deleted name (retention renamed it), else the staging hard link.
func (a *Agent) openCandidate(c *candidate) ([]openedFile, error) {
	var out []openedFile
	for _, fs := range c.Files {
		var f *os.File
		var err error
		paths := []string{c.path(fs.Name), c.path(fs.Name + segment.SuffixDeleted), a.staging.path(c, fs.Name)}
		if fs.Src != "" {
			paths = []string{c.path(fs.Src)} // a salvaged swap file: only that one
		}
		for _, p := range paths {
			if p == "" {
				continue
			}
			if f, err = fsutil.OpenRegular(p); err == nil {
				break
			}
			if errors.Is(err, fsutil.ErrNotRegular) { // a FIFO or device: a failure, never a gap
				closeAll(out)
				return nil, err
			}
		}
		if f == nil {
			if fs.Name == c.Files[0].Name {
				closeAll(out)
				return nil, fmt.Errorf("%s: %w", c.path(fs.Name), errVanished)
			}
			continue // a side file deleted alone: restore rebuilds what it needs
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			closeAll(out)
			return nil, err
		}
		of := openedFile{stat: fileStat{Name: fs.Name, Size: st.Size(), MTime: st.ModTime(), Ino: fs.Ino, Src: fs.Src}, f: f}
		if a.snap().DropCache {
			of.res = residentPages(f, st.Size())
			a.checkCacheVisibility(f, of.res)
		}
		out = append(out, of)
	}
	return out, nil
}

var errVanished = errors.New("deleted before it could be archived")

func closeAll(fs []openedFile) {
	for _, f := range fs {
		f.f.Close()
	}
}

// shipResult says what happened to a candidate.
type shipResult struct {
	status   string // archived, already, corrupt
	manifest string
	raw      int64
	stored   int64
	detail   string
	// truncated: a torn active segment archived up to its valid prefix.
	truncated bool
}

// ship archives one candidate with archive.Commit (format v2): skip it if
// its manifest is already in the bucket (one Stat: the key comes from the
// files' identity), validate the .log while it is uploaded (one read),
// upload the other files (create-only), then the manifest as the commit
// marker.
func (a *Agent) ship(ctx context.Context, c *candidate, id BrokerIdentity, log *slog.Logger) (shipResult, error) {
	cfg := a.snap()
	files, err := a.openCandidate(c)
	if err != nil {
		return shipResult{}, err
	}
	defer func() {
		for _, f := range files {
			if cfg.DropCache {
				a.metrics.PagesDropped.Add(float64(dropNewPages(f.f, f.res)))
			}
			f.f.Close()
		}
	}()
	req := archive.CommitRequest{
		Layout: a.layout,
		Manifest: archive.SegmentManifest{Kind: c.Kind, ClusterID: id.ClusterID, BrokerID: id.BrokerID, LogDir: c.LogDir,
			Topic: c.Dir.Topic, Partition: c.Dir.Partition, TopicID: a.topicID(c), BaseOffset: c.Base, SnapshotEpoch: c.Epoch,
			NextSegmentBase: c.NextBase, Agent: "segvault " + a.version, Validation: "shallow", PartitionState: a.partitionState(c)},
		Active: c.Active,
		Deep:   cfg.DeepValidate,
		Limit:  func(r io.Reader) io.Reader { return a.limitRead(ctx, r) },
		Log:    log,
	}
	if cfg.DeepValidate {
		req.Manifest.Validation = "deep"
	}
	for _, f := range files {
		req.Files = append(req.Files, archive.CommitFile{Name: f.stat.Name, Path: c.path(f.stat.src()), R: f.f,
			Size: f.stat.Size, ModTime: f.stat.MTime, Inode: f.stat.Ino})
	}
	r, err := archive.Commit(ctx, a.store, req)
	if err != nil {
		return shipResult{}, err
	}
	switch r.Status {
	case archive.CommitCorrupt:
		return shipResult{status: statusCorrupt, detail: r.Detail}, nil
	case archive.CommitAlready:
		return shipResult{status: "already", manifest: r.ManifestKey}, nil
	}
	c.NextBase = r.Manifest.NextSegmentBase
	return shipResult{status: statusArchived, manifest: r.ManifestKey, raw: r.Raw, stored: r.Stored, truncated: r.Truncated}, nil
}

// topicID reads the partition's topic id, NoTopicID if it has none.
func (a *Agent) topicID(c *candidate) string {
	if c.Dir.Topic == MetadataTopic {
		return MetadataTopicID
	}
	p := filepath.Join(c.DirPath, index.PartitionMetadataFile)
	data, err := fsutil.ReadFileRegular(p)
	if err != nil {
		return archive.NoTopicID
	}
	id, err := index.ParsePartitionMetadata(p, data)
	if err != nil {
		return archive.NoTopicID
	}
	return id
}

// partitionState captures the small partition-dir files a rebuild needs.
// CapturedAt is the newest modification time of the files read (not the
// wall clock), so the same partition state gives the same manifest bytes: a
// retried commit is byte-identical; restore still orders states by it.
func (a *Agent) partitionState(c *candidate) *archive.PartitionState {
	ps := &archive.PartitionState{}
	read := func(name string) []byte {
		p := filepath.Join(c.DirPath, name)
		if st, err := os.Stat(p); err == nil && st.ModTime().After(ps.CapturedAt) {
			ps.CapturedAt = st.ModTime().UTC()
		}
		b, err := fsutil.ReadFileRegular(p)
		if err != nil || len(b) > 1<<20 {
			return nil
		}
		if b == nil {
			b = []byte{} // an empty file, not a missing one
		}
		return b
	}
	ps.LeaderEpochCheckpoint = read(index.LeaderEpochCheckpointFile)
	ps.PartitionMetadata = read(index.PartitionMetadataFile)
	if c.Dir.Topic == MetadataTopic {
		ps.QuorumState = read("quorum-state")
	}
	return ps
}
