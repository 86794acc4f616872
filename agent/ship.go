package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
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

// ship archives one candidate: validate and hash the .log in one pass, skip
// it if its manifest is already in the bucket, upload every file
// (create-only), then the manifest as the commit marker.
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
	main := files[0]

	// Pass 1: validate and hash the segment (or KRaft snapshot).
	sha, crc := sha256.New(), crc32.New(crcTable)
	src := io.TeeReader(a.limitRead(ctx, io.NewSectionReader(main.f, 0, main.stat.Size)), io.MultiWriter(sha, crc))
	base := c.Base
	if c.Kind == archive.KindKRaftSnapshot {
		base = -1
	}
	sum, err := segment.Scan(src, main.stat.Size, c.path(main.stat.src()), segment.ScanOptions{
		ReaderOptions: segment.ReaderOptions{BaseOffset: base}, Deep: cfg.DeepValidate})
	var truncated *segment.CorruptionError
	if err != nil {
		var ce *segment.CorruptionError
		if errors.As(err, &ce) && c.Active && (segment.IsTruncated(err) || zeroTail(main.f, ce.Pos, sum, main.stat.Size)) {
			// Salvage of a stopped broker's torn active segment (a partial
			// batch, or a tail of zeros an unclean stop leaves): keep what
			// Kafka's recovery keeps, the batches before the torn one.
			truncated = ce
			err = nil
		} else if errors.As(err, &ce) {
			return shipResult{status: statusCorrupt, detail: err.Error()}, nil
		} else {
			return shipResult{}, fmt.Errorf("validate: %w", err)
		}
	}
	rawSHA := hex.EncodeToString(sha.Sum(nil))
	if truncated != nil {
		files, rawSHA, err = a.truncateToValid(ctx, c, files, sum, truncated, log)
		if err != nil {
			return shipResult{}, err
		}
		main = files[0]
	}
	// The batch header's baseOffset is outside Kafka's CRC: a rolled
	// segment's offsets must end below the base of the segment after it.
	if c.Kind == archive.KindSegment && c.NextBase >= 0 && sum.LastOffset >= c.NextBase {
		return shipResult{status: statusCorrupt, detail: fmt.Sprintf("%s: last offset %d is not below the next segment's base offset %d (a base offset outside the CRC is damaged)",
			c.path(main.stat.Name), sum.LastOffset, c.NextBase)}, nil
	}
	if c.NextBase < 0 { // an active segment of a stopped broker
		c.NextBase = c.Base
		if sum.LastOffset >= 0 {
			c.NextBase = sum.LastOffset + 1
		}
	}
	ref := archive.SegmentRef{Cluster: id.ClusterID, Topic: c.Dir.Topic, Partition: c.Dir.Partition,
		TopicID: a.topicID(c), BaseOffset: c.Base, Broker: id.BrokerID, ContentID: rawSHA[:12]}
	dir := a.layout.SegmentDir(ref)
	if c.Kind == archive.KindKRaftSnapshot {
		dir = a.layout.SnapshotDir(ref, c.Epoch)
	}
	mkey := dir + archive.ManifestName
	if ok, err := a.store.Exists(ctx, mkey); err != nil {
		return shipResult{}, fmt.Errorf("check manifest %s: %w", mkey, err)
	} else if ok {
		return shipResult{status: "already", manifest: mkey}, nil
	}

	// Pass 2: upload every file, create-only, the .log first.
	m := &archive.SegmentManifest{
		Format: archive.SegmentManifestFormat, Version: archive.ManifestVersion, Kind: c.Kind,
		ClusterID: id.ClusterID, BrokerID: id.BrokerID, LogDir: c.LogDir, Topic: c.Dir.Topic, Partition: c.Dir.Partition,
		TopicID: ref.TopicID, BaseOffset: c.Base, SnapshotEpoch: c.Epoch, NextSegmentBase: c.NextBase, ContentID: ref.ContentID,
		Agent: "segvault " + a.version, Validation: "shallow", Summary: archive.SummaryFromSegment(sum),
	}
	if cfg.DeepValidate {
		m.Validation = "deep"
	}
	var res shipResult
	for i, f := range files {
		var r io.Reader = io.NewSectionReader(f.f, 0, f.stat.Size)
		if i > 0 {
			r = a.limitRead(ctx, r)
		}
		rec, err := a.store.PutFile(ctx, dir+f.stat.Name, r, f.stat.Size)
		if err != nil {
			return shipResult{}, fmt.Errorf("upload %s: %w", f.stat.Name, err)
		}
		if i == 0 && rec.SHA256 != rawSHA {
			// The file changed between the two passes (truncation): do not commit.
			return shipResult{}, fmt.Errorf("%s changed while it was archived (sha256 %s, then %s)", c.path(f.stat.src()), rawSHA, rec.SHA256)
		}
		rec.Name, rec.ModTime = f.stat.Name, f.stat.MTime
		m.Files = append(m.Files, rec)
		res.raw += rec.Size
		res.stored += rec.Object.Size
	}
	m.PartitionState = a.partitionState(c)
	m.CreatedAt = time.Now().UTC()
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return shipResult{}, err
	}
	if err := a.store.PutManifest(ctx, mkey, data); err != nil {
		if errors.Is(err, uploader.ErrConflict) {
			// Same content id, another agent's manifest: already committed.
			log.Info("manifest already committed by another writer", "key", mkey)
			return shipResult{status: "already", manifest: mkey}, nil
		}
		return shipResult{}, fmt.Errorf("commit manifest %s: %w", mkey, err)
	}
	res.status, res.manifest = statusArchived, mkey
	res.truncated = truncated != nil
	return res, nil
}

// zeroTail reports whether the bytes of f from pos (where validation
// failed, right after the last valid batch) to size are all zeros: the
// unwritten tail of an unclean stop, which Kafka's recovery truncates (a
// zero batch length is invalid), not damaged data.
func zeroTail(f *os.File, pos int64, sum *segment.Summary, size int64) bool {
	if sum == nil || pos != sum.Size || pos >= size {
		return false
	}
	buf := make([]byte, 64<<10)
	r := io.NewSectionReader(f, pos, size-pos)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// truncateToValid cuts a torn active segment to its valid prefix, as
// Kafka's recovery does (LogSegment.recover truncates to the last complete,
// valid batch): the .log is archived up to sum.Size and hashed again; its
// indexes, which may point past the cut, are left for restore to rebuild,
// and a producer snapshot above the new log end is dropped (Kafka deletes
// it at load). The files dropped are closed.
func (a *Agent) truncateToValid(ctx context.Context, c *candidate, files []openedFile, sum *segment.Summary, ce *segment.CorruptionError, log *slog.Logger) ([]openedFile, string, error) {
	main := files[0]
	end := c.Base
	if sum.LastOffset >= 0 {
		end = sum.LastOffset + 1
	}
	sha := sha256.New()
	if _, err := io.Copy(sha, a.limitRead(ctx, io.NewSectionReader(main.f, 0, sum.Size))); err != nil {
		return files, "", fmt.Errorf("read %s: %w", c.path(main.stat.src()), err)
	}
	fileBytes := main.stat.Size
	main.stat.Size = sum.Size
	kept := []openedFile{main}
	for _, f := range files[1:] {
		n, ok := segment.ParseFileName(f.stat.Name)
		if ok && (n.Kind == segment.KindIndex || n.Kind == segment.KindTimeIndex || n.Kind == segment.KindTxnIndex ||
			(n.Kind == segment.KindSnapshot && n.BaseOffset > end)) {
			f.f.Close()
			continue
		}
		kept = append(kept, f)
	}
	log.Warn("active segment has a torn tail: archiving it truncated to its last complete batch, as Kafka's recovery would",
		"file", c.path(main.stat.src()), "valid_bytes", sum.Size, "file_bytes", fileBytes, "truncated_at_byte", ce.Pos, "check", ce.Check, "err", ce.Err)
	return kept, hex.EncodeToString(sha.Sum(nil)), nil
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
func (a *Agent) partitionState(c *candidate) *archive.PartitionState {
	ps := &archive.PartitionState{CapturedAt: time.Now().UTC()}
	read := func(name string) []byte {
		b, err := fsutil.ReadFileRegular(filepath.Join(c.DirPath, name))
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
