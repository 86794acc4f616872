package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// CommitStore is what Commit needs of the archive: the agent's Archive
// provides it (PutFile stores one file in format v2 and returns its
// FileRecord; PutManifest is a verified create-only write of a small object).
type CommitStore interface {
	Exists(ctx context.Context, key string) (bool, error)
	List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error
	Delete(ctx context.Context, key string) error
	PutFile(ctx context.Context, key string, src io.Reader, size int64) (FileRecord, error)
	PutManifest(ctx context.Context, key string, data []byte) error
	// Get reads a small object (a manifest) whole.
	Get(ctx context.Context, key string, max int64) ([]byte, error)
}

// CommitFile is one opened file of a segment (or KRaft snapshot), held open
// by the caller for the whole commit.
type CommitFile struct {
	Name    string      // name in the archive (and the partition dir)
	Path    string      // where it was read, for errors and logs
	R       io.ReaderAt // its bytes
	Size    int64
	ModTime time.Time
	Inode   uint64
}

// CommitRequest describes one segment to commit.
type CommitRequest struct {
	Layout Layout
	// Manifest carries the identity fields (ClusterID, BrokerID, LogDir,
	// Topic, Partition, TopicID, Kind, BaseOffset, SnapshotEpoch), Agent,
	// Validation and PartitionState; Commit fills the rest. NextSegmentBase
	// is the base of the segment after this one, or -1 for an active
	// segment (then it is derived from the data).
	Manifest SegmentManifest
	// Files: the .log (or snapshot .checkpoint) first.
	Files []CommitFile
	// Active allows the salvage of a torn or zero-filled tail (a stopped
	// broker's active segment), archived up to its last complete batch.
	Active bool
	// Deep validates every record (segment.ScanOptions.Deep).
	Deep bool
	// Limit, if set, wraps every file read (the disk-read rate limit).
	Limit func(io.Reader) io.Reader
	Log   *slog.Logger
}

// maxUploadAttempts bounds the upload ids one file state may use (see Commit).
const maxUploadAttempts = 4

// Commit outcomes.
const (
	CommitArchived = "archived"
	CommitAlready  = "already"
	CommitCorrupt  = "corrupt"
)

// CommitResult says what Commit did.
type CommitResult struct {
	Status      string // CommitArchived, CommitAlready or CommitCorrupt
	ManifestKey string
	Manifest    *SegmentManifest // the committed manifest (CommitArchived)
	Detail      string           // why a segment is corrupt
	Raw, Stored int64
	// Truncated: a torn active segment archived up to its valid prefix.
	Truncated bool
}

// Commit archives one segment in format v2 (docs/FORMAT.md, "Format v2"):
//
//  1. the manifest key comes from the .log's identity (UploadID), so "already
//     archived" is one Exists, before anything is read;
//  2. objects already under the version's prefix without a manifest are our
//     own crashed attempt (same broker, same file state): they are deleted;
//  3. the .log is read once: validated (segment.Scan) while it is streamed
//     to its data object; a corrupt segment aborts the upload and leaves
//     nothing (a salvageable torn tail of an active segment is uploaded
//     again, truncated, in a second pass);
//  4. the other files are uploaded;
//  5. the manifest, written last, is the commit.
func Commit(ctx context.Context, st CommitStore, req CommitRequest) (CommitResult, error) {
	if len(req.Files) == 0 {
		return CommitResult{}, errors.New("commit: no files")
	}
	limit := req.Limit
	if limit == nil {
		limit = func(r io.Reader) io.Reader { return r }
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := req.Manifest
	main := req.Files[0]
	ref := SegmentRef{Cluster: m.ClusterID, Topic: m.Topic, Partition: m.Partition, TopicID: m.TopicID,
		BaseOffset: m.BaseOffset, Broker: m.BrokerID}
	// The version's prefix: the upload id's, unless an earlier attempt left
	// objects there that cannot be deleted (a store that grants no delete):
	// then the next of a few alternate ids, each derived from the same file
	// state, so a retry finds them again.
	var dir, mkey string
	for attempt := 0; ; attempt++ {
		name := main.Name
		if attempt > 0 {
			name = fmt.Sprintf("%s#%d", main.Name, attempt)
		}
		ref.ContentID = UploadID(ref, name, main.Size, main.ModTime, main.Inode)
		dir = req.Layout.SegmentDirV2(ref)
		if m.Kind == KindKRaftSnapshot {
			dir = req.Layout.SnapshotDirV2(ref, m.SnapshotEpoch)
		}
		mkey = dir + ManifestName
		if ok, err := st.Exists(ctx, mkey); err != nil {
			return CommitResult{}, fmt.Errorf("check manifest %s: %w", mkey, err)
		} else if ok {
			return CommitResult{Status: CommitAlready, ManifestKey: mkey}, nil
		}
		var stale []string
		if err := st.List(ctx, dir, func(oi uploader.ObjectInfo) error { stale = append(stale, oi.Key); return nil }); err != nil {
			return CommitResult{}, fmt.Errorf("list %s: %w", dir, err)
		}
		var derr error
		for _, k := range stale {
			log.Info("deleting an uncommitted data object of an earlier attempt", "key", k)
			if err := st.Delete(ctx, k); err != nil {
				derr = fmt.Errorf("delete uncommitted %s: %w", k, err)
				break
			}
		}
		if derr == nil {
			break
		}
		if attempt == maxUploadAttempts-1 {
			return CommitResult{}, derr
		}
		log.Warn("an earlier attempt's objects cannot be deleted; archiving under another upload id", "err", derr)
	}

	base := m.BaseOffset
	if m.Kind == KindKRaftSnapshot {
		base = -1
	}
	files := req.Files
	var uploaded []string // data keys to delete if the commit fails after them
	fail := func(err error) (CommitResult, error) {
		deleteAll(ctx, st, uploaded)
		return CommitResult{}, err
	}

	// The .log: one pass, validation and upload together.
	logKey := req.Layout.DataKeyV2(dir, main.Name)
	pr, pw := io.Pipe()
	type putRes struct {
		rec FileRecord
		err error
	}
	done := make(chan putRes, 1)
	go func() {
		rec, err := st.PutFile(ctx, logKey, pr, main.Size)
		pr.CloseWithError(errors.New("upload ended")) // unblock the scan if PutFile stopped reading
		done <- putRes{rec, err}
	}()
	tw := &teeWriter{w: pw}
	src := io.TeeReader(limit(io.NewSectionReader(main.R, 0, main.Size)), tw)
	sum, err := segment.Scan(src, main.Size, main.Path, segment.ScanOptions{
		ReaderOptions: segment.ReaderOptions{BaseOffset: base}, Deep: req.Deep})
	if tw.err != nil {
		// The upload failed while the scan fed it: whatever Scan made of
		// the cut-off stream, this is an upload failure.
		pw.CloseWithError(tw.err)
		r := <-done
		return CommitResult{}, fmt.Errorf("upload %s: %w", main.Name, errors.Join(r.err, tw.err))
	}
	abort := func(why error) FileRecord {
		pw.CloseWithError(why)
		r := <-done
		if r.err == nil { // it had read everything before the abort: remove it
			deleteAll(ctx, st, []string{logKey})
		}
		return FileRecord{}
	}
	var truncated *segment.CorruptionError
	if err != nil {
		var ce *segment.CorruptionError
		switch {
		case errors.As(err, &ce) && req.Active && (segment.IsTruncated(err) || zeroTail(main.R, ce.Pos, sum, main.Size)):
			// Salvage of a stopped broker's torn active segment (a partial
			// batch, or a tail of zeros an unclean stop leaves): keep what
			// Kafka's recovery keeps, the batches before the torn one.
			truncated = ce
		case errors.As(err, &ce):
			abort(err)
			return CommitResult{Status: CommitCorrupt, ManifestKey: mkey, Detail: err.Error()}, nil
		default:
			abort(err)
			return CommitResult{}, fmt.Errorf("validate: %w", err)
		}
	}
	// The batch header's baseOffset is outside Kafka's CRC: a rolled
	// segment's offsets must end below the base of the segment after it.
	if m.Kind == KindSegment && m.NextSegmentBase >= 0 && sum.LastOffset >= m.NextSegmentBase {
		detail := fmt.Sprintf("%s: last offset %d is not below the next segment's base offset %d (a base offset outside the CRC is damaged)",
			main.Path, sum.LastOffset, m.NextSegmentBase)
		abort(errors.New(detail))
		return CommitResult{Status: CommitCorrupt, ManifestKey: mkey, Detail: detail}, nil
	}
	var logRec FileRecord
	if truncated != nil {
		abort(truncated)
		files = truncateToValid(files, sum, truncated, log, m.BaseOffset)
		main = files[0]
		rec, err := st.PutFile(ctx, logKey, limit(io.NewSectionReader(main.R, 0, main.Size)), main.Size)
		if err != nil {
			return CommitResult{}, fmt.Errorf("upload %s: %w", main.Name, err)
		}
		logRec = rec
	} else {
		// Scan reads the whole file; anything it left is still uploaded.
		if _, err := io.Copy(io.Discard, src); err != nil {
			abort(err)
			if tw.err != nil {
				return CommitResult{}, fmt.Errorf("upload %s: %w", main.Name, tw.err)
			}
			return CommitResult{}, fmt.Errorf("read %s: %w", main.Path, err)
		}
		pw.Close()
		r := <-done
		if r.err != nil {
			return CommitResult{}, fmt.Errorf("upload %s: %w", main.Name, r.err)
		}
		logRec = r.rec
	}
	uploaded = append(uploaded, logKey)
	if logRec.Size != main.Size {
		return fail(fmt.Errorf("upload %s: stored %d bytes of %d", main.Path, logRec.Size, main.Size))
	}
	if m.NextSegmentBase < 0 { // an active segment of a stopped broker
		m.NextSegmentBase = m.BaseOffset
		if sum.LastOffset >= 0 {
			m.NextSegmentBase = sum.LastOffset + 1
		}
	}

	logRec.Name, logRec.ModTime = main.Name, main.ModTime
	m.Files = []FileRecord{logRec}
	res := CommitResult{Raw: logRec.Size, Stored: storedSize(logRec)}
	for _, f := range files[1:] {
		key := req.Layout.DataKeyV2(dir, f.Name)
		rec, err := st.PutFile(ctx, key, limit(io.NewSectionReader(f.R, 0, f.Size)), f.Size)
		if err != nil {
			return fail(fmt.Errorf("upload %s: %w", f.Name, err))
		}
		uploaded = append(uploaded, key)
		rec.Name, rec.ModTime = f.Name, f.ModTime
		m.Files = append(m.Files, rec)
		res.Raw += rec.Size
		res.Stored += storedSize(rec)
	}

	m.Format, m.Version = SegmentManifestFormat, ManifestVersionV2
	m.ContentID = logRec.SHA256[:12]
	m.UploadID = ref.ContentID
	m.SourceModTime = main.ModTime.UTC()
	m.CreatedAt = time.Time{}
	m.Summary = SummaryFromSegment(sum)
	// The same content committed before by this broker under another upload
	// id (the file's mtime or inode changed, its bytes did not: a touched or
	// compacted-to-identical segment) is the same version: "already", as a
	// v1 content-addressed key would say.
	if prev, err := sameContent(ctx, st, dir, m.BrokerID, m.ContentID, mkey); err != nil {
		return fail(err)
	} else if prev != "" {
		deleteAll(ctx, st, uploaded)
		return CommitResult{Status: CommitAlready, ManifestKey: prev}, nil
	}
	data, err := encodeManifestV2(&m)
	if err != nil {
		return fail(err)
	}
	if err := st.PutManifest(ctx, mkey, data); err != nil {
		if errors.Is(err, uploader.ErrConflict) {
			// Another writer committed this upload id (the same file state):
			// already archived; the data objects are the ones it names.
			log.Info("manifest already committed by another writer", "key", mkey)
			return CommitResult{Status: CommitAlready, ManifestKey: mkey}, nil
		}
		return fail(fmt.Errorf("commit manifest %s: %w", mkey, err))
	}
	res.Status, res.ManifestKey, res.Manifest = CommitArchived, mkey, &m
	res.Truncated = truncated != nil
	return res, nil
}

// sameContent returns the key of a committed v2 manifest of the same
// segment (the versions beside dir), broker and content id, "" if none.
func sameContent(ctx context.Context, st CommitStore, dir string, broker int32, contentID, self string) (string, error) {
	base := path.Dir(strings.TrimSuffix(dir, "/")) + "/"
	mine := fmt.Sprintf("%s%d-", base, broker)
	var keys []string
	if err := st.List(ctx, base, func(oi uploader.ObjectInfo) error {
		if strings.HasPrefix(oi.Key, mine) && path.Base(oi.Key) == ManifestName && oi.Key != self {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return "", fmt.Errorf("list %s: %w", base, err)
	}
	for _, k := range keys {
		data, err := st.Get(ctx, k, MaxManifestSize)
		if errors.Is(err, uploader.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", k, err)
		}
		var head struct {
			ContentID string `json:"content_id"`
		}
		if json.Unmarshal(data, &head) == nil && head.ContentID == contentID {
			return k, nil
		}
	}
	return "", nil
}

// encodeManifestV2 is the manifest's stored form (deterministic bytes).
func encodeManifestV2(m *SegmentManifest) ([]byte, error) {
	return EncodeManifest(m)
}

func storedSize(r FileRecord) int64 {
	if !r.IsV2() {
		return r.Object.Size
	}
	var n int64
	for _, c := range r.Chunks {
		n += c.StoredSize
	}
	return n
}

// deleteAll removes uncommitted data objects after a failed commit (best
// effort: what stays is deleted by the next attempt, or reported as an
// orphan by the catalog).
func deleteAll(ctx context.Context, st CommitStore, keys []string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, k := range keys {
		_ = st.Delete(dctx, k)
	}
}

// zeroTail reports whether the bytes of r from pos (where validation
// failed, right after the last valid batch) to size are all zeros: the
// unwritten tail of an unclean stop, which Kafka's recovery truncates (a
// zero batch length is invalid), not damaged data.
func zeroTail(ra io.ReaderAt, pos int64, sum *segment.Summary, size int64) bool {
	if sum == nil || pos != sum.Size || pos >= size {
		return false
	}
	buf := make([]byte, 64<<10)
	r := io.NewSectionReader(ra, pos, size-pos)
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
// valid batch): the .log is archived up to sum.Size; its indexes, which may
// point past the cut, are left for restore to rebuild, and a producer
// snapshot above the new log end is dropped (Kafka deletes it at load).
func truncateToValid(files []CommitFile, sum *segment.Summary, ce *segment.CorruptionError, log *slog.Logger, baseOffset int64) []CommitFile {
	main := files[0]
	end := baseOffset
	if sum.LastOffset >= 0 {
		end = sum.LastOffset + 1
	}
	fileBytes := main.Size
	main.Size = sum.Size
	kept := []CommitFile{main}
	for _, f := range files[1:] {
		n, ok := segment.ParseFileName(f.Name)
		if ok && (n.Kind == segment.KindIndex || n.Kind == segment.KindTimeIndex || n.Kind == segment.KindTxnIndex ||
			(n.Kind == segment.KindSnapshot && n.BaseOffset > end)) {
			continue
		}
		kept = append(kept, f)
	}
	log.Warn("active segment has a torn tail: archiving it truncated to its last complete batch, as Kafka's recovery would",
		"file", main.Path, "valid_bytes", sum.Size, "file_bytes", fileBytes, "truncated_at_byte", ce.Pos, "check", ce.Check, "err", ce.Err)
	return kept
}

// teeWriter remembers the first write error (the upload's side of the pipe).
type teeWriter struct {
	w   io.Writer
	err error
}

func (t *teeWriter) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
	}
	return n, err
}
