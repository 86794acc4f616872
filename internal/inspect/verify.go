package inspect

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/fsutil"
	"github.com/segvault/segvault/segment"
)

// FileResult is one checked file: a row of `segvault verify`.
type FileResult struct {
	Path    string `json:"path"`
	Kind    string `json:"kind"`
	Bytes   int64  `json:"bytes"`
	Batches int64  `json:"batches,omitempty"`
	Records int64  `json:"records,omitempty"`
	Status  string `json:"status"` // ok, corrupt, truncated, error
	Detail  string `json:"detail,omitempty"`
}

// VerifyPath checks a file, a partition dir or a log dir (deep: every
// record decompressed and parsed) and returns one FileResult per file
// checked, none for a path holding no Kafka file. The error is for p
// itself (missing, unreadable dir).
func VerifyPath(p string, deep bool) ([]FileResult, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		n, ok := segment.ParseFileName(filepath.Base(p))
		switch {
		case ok && n.Suffix == "" && n.Kind == segment.KindLog:
			return verifySegment(p, deep, isActiveSegment(p)), nil
		case ok && n.Suffix == "" && isIndexKind(n.Kind):
			return verifyIndexAlone(p, n), nil
		}
		r := verifyFile(p, deep, false)
		if r.Kind == "unknown" {
			return nil, nil // not a Kafka file: nothing checked
		}
		return []FileResult{r}, nil
	}
	if _, ok := segment.ParseDirName(filepath.Base(p)); ok {
		return verifyPartition(p, deep)
	}
	var out []FileResult
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		full := filepath.Join(p, e.Name())
		if e.IsDir() {
			if _, ok := segment.ParseDirName(e.Name()); ok {
				r, err := verifyPartition(full, deep)
				if err != nil {
					return nil, err
				}
				out = append(out, r...)
			}
			continue
		}
		if isRootFile(e.Name()) || e.Name() == bootstrapCheckpoint {
			out = append(out, verifyFile(full, deep, false))
		}
	}
	return out, nil
}

func isRootFile(name string) bool {
	if name == index.MetaPropertiesFile {
		return true
	}
	for _, n := range index.RootCheckpointFiles {
		if n == name {
			return true
		}
	}
	return false
}

func isIndexKind(k segment.FileKind) bool {
	return k == segment.KindIndex || k == segment.KindTimeIndex || k == segment.KindTxnIndex
}

// verifyPartition checks every file of a partition dir; a torn tail is
// tolerated only in the last (active) segment.
func verifyPartition(dir string, deep bool) ([]FileResult, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var logs []int64
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindLog && n.Suffix == "" {
			logs = append(logs, n.BaseOffset)
		}
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i] < logs[j] })
	active := int64(-1)
	if len(logs) > 0 {
		active = logs[len(logs)-1]
	}
	var out []FileResult
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		n, ok := segment.ParseFileName(e.Name())
		if ok && n.Suffix != "" {
			continue // Kafka's transient files: not part of the log
		}
		if ok && isIndexKind(n.Kind) {
			continue // checked with their .log
		}
		if !ok && e.Name() != index.LeaderEpochCheckpointFile && e.Name() != index.PartitionMetadataFile {
			continue
		}
		full := filepath.Join(dir, e.Name())
		if ok && n.Kind == segment.KindLog {
			out = append(out, verifySegment(full, deep, n.BaseOffset == active)...)
			continue
		}
		out = append(out, verifyFile(full, deep, false))
	}
	return out, nil
}

// verifySegment checks a .log, then, for a rolled segment, its index files
// against it (one row each). The active segment's indexes are preallocated
// and still growing: not checked.
func verifySegment(path string, deep, active bool) []FileResult {
	res := verifyFile(path, deep, active)
	n, _ := segment.ParseFileName(filepath.Base(path))
	if active {
		return []FileResult{res}
	}
	return append([]FileResult{res}, sideResults(path, n.BaseOffset, res.Status == "ok", allSideFiles)...)
}

// verifyIndexAlone checks an index file given on its own: against its .log
// when that is present and rolled, else its structure only.
func verifyIndexAlone(path string, n segment.FileName) []FileResult {
	logPath := strings.TrimSuffix(path, n.Kind.Ext()) + segment.KindLog.Ext()
	_, err := os.Stat(logPath)
	return sideResults(logPath, n.BaseOffset, err == nil && !isActiveSegment(logPath), n.Kind)
}

// allSideFiles asks sideResults for every index file of a segment.
const allSideFiles = segment.KindUnknown

// sideResults checks the index files (all present ones, or the one of kind
// only) of the segment at logPath: against the .log when againstLog (a
// rolled segment whose .log is valid), else their structure only.
func sideResults(logPath string, base int64, againstLog bool, only segment.FileKind) []FileResult {
	stem := strings.TrimSuffix(logPath, segment.KindLog.Ext())
	var files index.SideFiles
	var out []FileResult
	slot := map[segment.FileKind]int{}
	for _, k := range []segment.FileKind{segment.KindIndex, segment.KindTimeIndex, segment.KindTxnIndex} {
		if only != allSideFiles && k != only {
			continue
		}
		p := stem + k.Ext()
		data, err := fsutil.ReadFileRegular(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		r := FileResult{Path: p, Kind: k.String(), Bytes: int64(len(data)), Status: "ok"}
		if err != nil {
			r.Status, r.Detail = "error", err.Error()
			out = append(out, r)
			continue
		}
		switch k {
		case segment.KindIndex:
			files.Index = data
		case segment.KindTimeIndex:
			files.TimeIndex = data
		case segment.KindTxnIndex:
			files.TxnIndex = data
		}
		slot[k] = len(out)
		out = append(out, r)
	}
	if len(slot) == 0 {
		return out
	}
	if !againstLog {
		for k, i := range slot {
			var err error
			switch k {
			case segment.KindIndex:
				_, err = index.ParseOffsetIndex(out[i].Path, files.Index, base)
			case segment.KindTimeIndex:
				_, err = index.ParseTimeIndex(out[i].Path, files.TimeIndex, base)
			case segment.KindTxnIndex:
				_, err = index.ParseTxnIndex(out[i].Path, files.TxnIndex, base)
			}
			if err != nil {
				out[i].Status, out[i].Detail = "corrupt", err.Error()
			}
		}
		return out
	}
	setAll := func(status, detail string) []FileResult {
		for _, i := range slot {
			out[i].Status, out[i].Detail = status, detail
		}
		return out
	}
	f, err := fsutil.OpenRegular(logPath)
	if err != nil {
		return setAll("error", err.Error())
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return setAll("error", err.Error())
	}
	rep, err := index.VerifySegment(f, fi.Size(), logPath, files, index.VerifyOptions{BaseOffset: base})
	if err != nil && !errors.Is(err, index.ErrCorruptIndex) {
		var ce *segment.CorruptionError
		if errors.As(err, &ce) {
			return setAll("corrupt", "cannot be checked against its .log: "+err.Error())
		}
		return setAll("error", err.Error())
	}
	for k, i := range slot {
		fr := rep.Index
		switch k {
		case segment.KindTimeIndex:
			fr = rep.TimeIndex
		case segment.KindTxnIndex:
			fr = rep.TxnIndex
		}
		if !fr.Corrupt {
			continue
		}
		out[i].Status, out[i].Detail = "corrupt", out[i].Path+": corrupt"
		for _, pr := range fr.Problems {
			if pr.Corrupt {
				out[i].Detail = fmt.Sprintf("%s: entry %d at byte %d: %s check failed: %s", out[i].Path, pr.Entry, pr.Pos, pr.Check, pr.Detail)
				if pr.Entry < 0 {
					out[i].Detail = fmt.Sprintf("%s: byte %d: %s check failed: %s", out[i].Path, pr.Pos, pr.Check, pr.Detail)
				}
				break
			}
		}
	}
	return out
}

// verifyFile checks one file by its name: a .log or KRaft snapshot's
// batches (active marks a partition's last segment, whose torn tail is
// expected), or a side file's format.
func verifyFile(path string, deep, active bool) FileResult {
	res := FileResult{Path: path, Status: "ok"}
	data, size, f, err := openForVerify(path)
	if err != nil {
		res.Kind, res.Status, res.Detail = "?", "error", err.Error()
		return res
	}
	if f != nil {
		defer f.Close()
	}
	res.Bytes = size
	name := filepath.Base(path)
	fail := func(err error) FileResult {
		res.Status, res.Detail = "corrupt", err.Error()
		return res
	}
	n, ok := segment.ParseFileName(name)
	if !ok && name == bootstrapCheckpoint {
		n, ok = segment.FileName{BaseOffset: -1, Kind: segment.KindCheckpoint}, true
	}
	if ok {
		res.Kind = n.Kind.String()
		switch n.Kind {
		case segment.KindLog, segment.KindCheckpoint:
			base := n.BaseOffset
			if n.Kind == segment.KindCheckpoint {
				base = -1
			}
			sum, err := segment.Scan(f, size, path, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: base}, Deep: deep})
			if sum != nil {
				res.Batches, res.Records = sum.Batches, sum.Records
			}
			if err != nil {
				var ce *segment.CorruptionError
				if segment.IsTruncated(err) && active {
					res.Status, res.Detail = "truncated", err.Error()+" (the active segment may still be being written)"
					return res
				}
				if errors.As(err, &ce) {
					return fail(err)
				}
				res.Status, res.Detail = "error", err.Error()
				return res
			}
			if n.Kind == segment.KindCheckpoint {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					res.Status, res.Detail = "error", err.Error()
					return res
				}
				if _, err := index.VerifyKRaftSnapshot(f, size, path); err != nil {
					return fail(err)
				}
			}
		case segment.KindIndex:
			if _, err := index.ParseOffsetIndex(path, data, n.BaseOffset); err != nil {
				return fail(err)
			}
		case segment.KindTimeIndex:
			if _, err := index.ParseTimeIndex(path, data, n.BaseOffset); err != nil {
				return fail(err)
			}
		case segment.KindTxnIndex:
			if _, err := index.ParseTxnIndex(path, data, n.BaseOffset); err != nil {
				return fail(err)
			}
		case segment.KindSnapshot:
			if _, err := index.DecodeProducerSnapshot(path, data); err != nil {
				return fail(err)
			}
		}
		return res
	}
	res.Kind = name
	var perr error
	switch {
	case name == index.LeaderEpochCheckpointFile:
		_, perr = index.ParseLeaderEpochCheckpoint(path, data)
	case name == index.PartitionMetadataFile:
		_, perr = index.ParsePartitionMetadata(path, data)
	case name == index.MetaPropertiesFile:
		_, perr = index.ParseMetaProperties(path, data)
	case isRootFile(name):
		_, perr = index.ParseOffsetCheckpoint(path, data)
	default:
		res.Kind = "unknown"
	}
	if perr != nil {
		return fail(perr)
	}
	return res
}

// isActiveSegment reports whether a .log is the last segment of a partition
// dir: the one Kafka may still be appending to.
func isActiveSegment(logPath string) bool {
	abs, err := filepath.Abs(logPath)
	if err != nil {
		return false
	}
	dir := filepath.Dir(abs)
	if _, ok := segment.ParseDirName(filepath.Base(dir)); !ok {
		return false
	}
	n, ok := segment.ParseFileName(filepath.Base(abs))
	if !ok || n.Kind != segment.KindLog || n.Suffix != "" {
		return false
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if m, ok := segment.ParseFileName(e.Name()); ok && m.Kind == segment.KindLog && m.Suffix == "" && m.BaseOffset > n.BaseOffset {
			return false
		}
	}
	return true
}

// openForVerify opens .log-like files for streaming and reads small ones.
func openForVerify(path string) ([]byte, int64, *os.File, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if n, ok := segment.ParseFileName(filepath.Base(path)); ok && (n.Kind == segment.KindLog || n.Kind == segment.KindCheckpoint) || filepath.Base(path) == bootstrapCheckpoint {
		return nil, fi.Size(), f, nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 256<<20))
	return data, fi.Size(), nil, err
}
