package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// CheckResult is one checked (or missing, or orphaned) archive object.
type CheckResult struct {
	Path    string // object key
	Kind    string // file extension of a data file ("log", "index", ...), "manifest", "gap-marker", ...
	Bytes   int64
	Batches int64
	Records int64
	Status  string // ok, corrupt, error, missing, orphan
	Detail  string
}

// CheckOptions choose what Check reads.
type CheckOptions struct {
	Decode DecodeOptions
	// Deep decompresses and parses every record of a .log or snapshot.
	Deep bool
	// Choose picks the manifests (indexes into the sorted manifest keys)
	// whose objects are read back; nil reads every one. The others are
	// still decoded and their objects checked for presence.
	Choose func(manifestKeys []string) ([]int, error)
}

// Check checks the archive under both layout roots, in the spirit of
// restic's check: every manifest of every kind (segment and KRaft snapshot
// manifests of v1 and v2, log-dir captures, gap markers, tail manifests,
// claims) decodes; every object a manifest names exists ("missing"
// otherwise) and, for chosen manifests, reads back verified (sizes,
// digests, and the batches of a .log or snapshot); objects no manifest
// names are reported as "orphan". An error return means the archive could
// not be listed or Choose failed; everything else is a result.
func Check(ctx context.Context, b uploader.Bucket, l Layout, opts CheckOptions) ([]CheckResult, error) {
	cat, err := ListAll(ctx, b, l)
	if err != nil {
		return nil, fmt.Errorf("list %s and %s in %s: %w", l.Root(), l.RootV2(), b.String(), err)
	}
	var out []CheckResult
	objects := map[string]uploader.ObjectInfo{} // every object a manifest may name
	var dataKeys []string
	addObject := func(oi uploader.ObjectInfo) {
		objects[oi.Key] = oi
		dataKeys = append(dataKeys, oi.Key)
	}
	for _, v := range cat.Versions {
		for _, oi := range v.Data {
			addObject(oi)
		}
	}
	for _, es := range [][]Entry{cat.Orphans, cat.Packs} {
		for _, e := range es {
			addObject(e.Object)
		}
	}
	for _, oi := range cat.Unknown {
		addObject(oi)
	}
	referenced := map[string]bool{}
	// Deletion marks (prune): the mark and the objects it names are a
	// deletion in progress, not orphans.
	for _, oi := range cat.Unknown {
		if _, ok := isDeletionMarkKey(l, oi.Key); !ok {
			continue
		}
		r := CheckResult{Path: oi.Key, Kind: "deletion-mark", Bytes: oi.Size, Status: "ok"}
		data, err := readSmall(ctx, b, oi.Key)
		var m *DeletionMark
		if err == nil {
			m, err = DecodeDeletionMark(oi.Key, data)
		}
		switch {
		case err != nil && errors.Is(err, uploader.ErrNotFound):
			continue // completed by a prune running now
		case err != nil:
			referenced[oi.Key] = true // reported here, not again as an orphan
			r.Status, r.Detail = "corrupt", err.Error()
		default:
			referenced[oi.Key] = true
			for _, k := range m.Keys {
				referenced[k] = true
			}
			r.Detail = fmt.Sprintf("prune marked %d objects (%d bytes) for deletion at %s: %s", len(m.Keys), m.Bytes, m.MarkedAt.UTC().Format(time.RFC3339), m.Reason)
		}
		out = append(out, r)
	}
	for _, e := range cat.LogDirs {
		out = append(out, checkSmall(ctx, b, e, "logdir-manifest"))
	}
	for _, e := range cat.Gaps {
		out = append(out, checkSmall(ctx, b, e, "gap-marker"))
	}
	for _, e := range cat.Claims {
		out = append(out, checkSmall(ctx, b, e, "claim"))
	}
	for _, e := range cat.Divergences {
		out = append(out, checkSmall(ctx, b, e, "divergence-report"))
	}
	for _, e := range cat.Tails {
		r, tm := checkTailManifest(ctx, b, e)
		out = append(out, r)
		if tm == nil {
			continue
		}
		for _, key := range tailKeys(tm) {
			referenced[key] = true
			if _, ok := objects[key]; !ok {
				out = append(out, CheckResult{Path: key, Kind: "pack", Status: "missing",
					Detail: fmt.Sprintf("%s: object named by tail manifest %s is missing", key, e.Object.Key)})
			}
		}
	}
	keys := make([]string, len(cat.Versions))
	for i, v := range cat.Versions {
		keys[i] = v.Manifest.Key
	}
	var chosen []int
	if opts.Choose != nil {
		if chosen, err = opts.Choose(keys); err != nil {
			return nil, err
		}
	} else {
		for i := range keys {
			chosen = append(chosen, i)
		}
	}
	read := map[int]bool{}
	for _, i := range chosen {
		read[i] = true
	}
	for i, key := range keys {
		data, err := uploader.ReadAll(ctx, b, key, MaxManifestSize)
		if err != nil {
			data, err = uploader.ReadAll(ctx, b, key, MaxManifestSize) // once more
		}
		if err != nil {
			out = append(out, CheckResult{Path: key, Kind: "manifest", Status: "error", Detail: err.Error()})
			continue
		}
		m, err := DecodeSegmentManifest(key, data)
		if err != nil {
			out = append(out, CheckResult{Path: key, Kind: "manifest", Status: "corrupt", Detail: err.Error()})
			continue
		}
		for j, f := range m.Files {
			missing := ""
			for _, k := range storedKeys(f) {
				referenced[k] = true
				if _, ok := objects[k]; !ok && missing == "" {
					missing = k
				}
			}
			if missing != "" {
				out = append(out, CheckResult{Path: missing, Kind: fileKind(f), Bytes: f.Size, Status: "missing",
					Detail: fmt.Sprintf("%s: object named by manifest %s is missing", missing, key)})
				continue
			}
			if !read[i] {
				continue
			}
			r := checkFile(ctx, b, key, m, j, opts)
			if r.Status != "ok" {
				// Once more before calling it corrupt: a read can fail in
				// transit without the stored object being bad.
				if r2 := checkFile(ctx, b, key, m, j, opts); r2.Status == "ok" {
					r2.Detail = fmt.Sprintf("%s: passed on the second read; the first failed: %s", r.Path, r.Detail)
					r = r2
				}
			}
			out = append(out, r)
		}
	}
	for _, k := range dataKeys {
		if !referenced[k] {
			out = append(out, CheckResult{Path: k, Kind: "object", Bytes: objects[k].Size, Status: "orphan",
				Detail: fmt.Sprintf("%s: no manifest references this object (an interrupted upload, or not segvault's)", k)})
		}
	}
	return out, nil
}

// storedKeys are the objects holding f: a v1 record's object; a v2
// record's data object (none for an empty file) and any other objects its
// chunks live in.
func storedKeys(f FileRecord) []string {
	if !f.IsV2() {
		return []string{f.Object.Key}
	}
	var out []string
	seen := map[string]bool{}
	for _, c := range f.Chunks {
		k := c.Key
		if k == "" {
			k = f.DataKey
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// fileKey names a file's stored form in results.
func fileKey(f FileRecord) string {
	if f.IsV2() {
		return f.DataKey
	}
	return f.Object.Key
}

func fileKind(f FileRecord) string { return strings.TrimPrefix(filepath.Ext(f.Name), ".") }

// tailKeys are the objects a tail manifest's chunks live in.
func tailKeys(m *TailManifest) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range m.Captures {
		for _, ch := range c.Chunks {
			k := ch.Key
			if k == "" {
				k = m.PackKey
			}
			if k != "" && !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	if m.PackKey != "" && !seen[m.PackKey] && m.PackSize > 0 {
		out = append(out, m.PackKey)
	}
	return out
}

// checkFile reads file j of manifest m and checks it against the manifest
// (size, digests) and, for the .log or KRaft snapshot, its batches.
func checkFile(ctx context.Context, b uploader.BucketReader, mkey string, m *SegmentManifest, j int, opts CheckOptions) CheckResult {
	f := m.Files[j]
	key := fileKey(f)
	r := CheckResult{Path: key, Kind: fileKind(f), Bytes: f.Size, Status: "ok"}
	rc, err := OpenFile(ctx, b, f, opts.Decode)
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		if errors.Is(err, uploader.ErrNotFound) {
			r.Status, r.Detail = "missing", fmt.Sprintf("%s: object named by manifest %s is missing", key, mkey)
		}
		return r
	}
	defer rc.Close()
	var rerr error
	switch {
	case j == 0 && m.Kind == KindKRaftSnapshot:
		// Small: read whole (reaching EOF checks the digests), then its
		// batches and its SnapshotHeader/SnapshotFooter.
		var data []byte
		data, rerr = io.ReadAll(io.LimitReader(rc, f.Size+1))
		if rerr == nil {
			var sum *segment.Summary
			sum, rerr = segment.Scan(bytes.NewReader(data), int64(len(data)), key, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: -1}, Deep: opts.Deep})
			if sum != nil {
				r.Batches, r.Records = sum.Batches, sum.Records
			}
		}
		if rerr == nil {
			_, rerr = index.VerifyKRaftSnapshot(bytes.NewReader(data), int64(len(data)), key)
		}
	case j == 0:
		var sum *segment.Summary
		sum, rerr = segment.Scan(rc, f.Size, key, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: m.BaseOffset}, Deep: opts.Deep})
		if sum != nil {
			r.Batches, r.Records = sum.Batches, sum.Records
		}
		if rerr == nil {
			_, rerr = io.Copy(io.Discard, rc) // reach EOF: the digests are checked there
		}
	default:
		_, rerr = io.Copy(io.Discard, rc)
	}
	if rerr != nil {
		r.Status, r.Detail = "corrupt", rerr.Error()
		var ce *segment.CorruptionError
		if !errors.Is(rerr, uploader.ErrIntegrity) && !errors.Is(rerr, segment.ErrCorrupt) && !segment.IsTruncated(rerr) && !errors.As(rerr, &ce) {
			r.Status = "error"
		}
	}
	return r
}

// readSmall reads a small manifest whole, once more on failure.
func readSmall(ctx context.Context, b uploader.BucketReader, key string) ([]byte, error) {
	data, err := uploader.ReadAll(ctx, b, key, MaxManifestSize)
	if err != nil {
		data, err = uploader.ReadAll(ctx, b, key, MaxManifestSize)
	}
	return data, err
}

// checkSmall reads and decodes a log-dir capture (checking each inline
// file's SHA-256), a gap marker or a claim (JSON).
func checkSmall(ctx context.Context, b uploader.BucketReader, e Entry, kind string) CheckResult {
	key := e.Object.Key
	r := CheckResult{Path: key, Kind: kind, Bytes: e.Object.Size, Status: "ok"}
	data, err := readSmall(ctx, b, key)
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	switch kind {
	case "gap-marker":
		if _, err := DecodeGapMarker(key, data); err != nil {
			r.Status, r.Detail = "corrupt", err.Error()
		}
		return r
	case "divergence-report":
		d, err := DecodeDivergenceReport(key, data)
		if err != nil {
			r.Status, r.Detail = "corrupt", err.Error()
		} else {
			r.Detail = fmt.Sprintf("broker %d's replica of %s-%d at base offset %d differs from broker %d's archived copy %s (first difference in bytes [%d, %d))",
				d.BrokerID, d.Topic, d.Partition, d.BaseOffset, d.ArchivedBroker, d.ManifestKey, d.FirstDiffStart, d.FirstDiffEnd)
		}
		return r
	case "claim":
		if !json.Valid(data) {
			r.Status, r.Detail = "corrupt", fmt.Sprintf("claim %s: not JSON", key)
		}
		return r
	}
	m, err := DecodeLogDirManifest(key, data)
	if err != nil {
		r.Status, r.Detail = "corrupt", err.Error()
		return r
	}
	for _, f := range m.Files {
		sum := sha256.Sum256(f.Content)
		if f.SHA256 != "" && hex.EncodeToString(sum[:]) != f.SHA256 {
			r.Status, r.Detail = "corrupt", fmt.Sprintf("%s: inline file %s: sha256 check failed (recorded %s, content %x)", key, f.Name, f.SHA256, sum)
			return r
		}
	}
	return r
}

// checkTailManifest reads and decodes a tail manifest.
func checkTailManifest(ctx context.Context, b uploader.BucketReader, e Entry) (CheckResult, *TailManifest) {
	key := e.Object.Key
	r := CheckResult{Path: key, Kind: "tail-manifest", Bytes: e.Object.Size, Status: "ok"}
	data, err := readSmall(ctx, b, key)
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		return r, nil
	}
	m, err := DecodeTailManifest(key, data)
	if err != nil {
		r.Status, r.Detail = "corrupt", err.Error()
		return r, nil
	}
	return r, m
}

// Sample chooses which manifests a sampled check (verify --scrub --sample)
// reads back. With a state file, runs rotate through the manifests in key
// order from a saved cursor, so ceil(1/Fraction) runs read everything;
// without one, the window of ceil(Fraction*N) manifests starts at a
// position seeded by the run time.
type Sample struct {
	Fraction  float64
	StatePath string // the --scrub-state file, "" for none
	Store     string // the cursor is only reused for the same store and prefix
	// Pending, when set, receives the new cursor instead of the file: the
	// caller saves it (SaveSampleCursor) only once the run has read its
	// whole window.
	Pending *[]byte
}

// sampleCursor is the --scrub-state file.
type sampleCursor struct {
	Store string `json:"store"`
	Next  string `json:"next_manifest"` // the first manifest key of the next run
}

// Choose returns the indexes of keys (sorted) to read, and saves the
// cursor (CheckOptions.Choose).
func (s Sample) Choose(keys []string) ([]int, error) {
	n := len(keys)
	if s.Fraction >= 1 || n == 0 {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	k := int(math.Ceil(s.Fraction * float64(n)))
	start := 0
	if s.StatePath == "" {
		start = int(uint64(time.Now().UnixNano()) % uint64(n))
	} else {
		var cur sampleCursor
		data, err := os.ReadFile(s.StatePath)
		switch {
		case err == nil:
			if json.Unmarshal(data, &cur) != nil {
				return nil, fmt.Errorf("--scrub-state %s: not a scrub cursor (delete it to start over)", s.StatePath)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("--scrub-state: %w", err)
		}
		if cur.Store == s.Store {
			start = sort.SearchStrings(keys, cur.Next) % n
		}
	}
	out := make([]int, 0, k)
	for i := 0; i < k; i++ {
		out = append(out, (start+i)%n)
	}
	if s.StatePath != "" {
		data, _ := json.Marshal(sampleCursor{Store: s.Store, Next: keys[(start+k)%n]})
		if s.Pending != nil {
			*s.Pending = data
			return out, nil
		}
		return out, SaveSampleCursor(s.StatePath, data)
	}
	return out, nil
}

// SaveSampleCursor writes the --scrub-state file (temp file, rename).
func SaveSampleCursor(statePath string, data []byte) error {
	tmp := statePath + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("--scrub-state: %w", err)
	}
	if err := os.Rename(tmp, statePath); err != nil {
		return fmt.Errorf("--scrub-state: %w", err)
	}
	return nil
}
