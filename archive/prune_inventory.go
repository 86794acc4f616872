package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/uploader"
)

// PruneInventory is what prune and info know of an archive: every object
// under both roots that they reason about, with the small ones they need
// (manifests, gap markers, tail manifests, deletion marks) decoded.
type PruneInventory struct {
	Versions []PruneVersion
	Gaps     []PruneGap
	LogDirs  []PruneLogDir
	Tails    []PruneTail
	// Packs are tail packs, Orphans data objects in a version dir that
	// holds no manifest (an interrupted upload, or one still in flight).
	Packs   []PruneObject
	Orphans []PruneObject
	Marks   []PruneMarkEntry
	// Sizes holds the size of every listed object, by key.
	Sizes map[string]int64
}

// PruneVersion is one archived segment or KRaft snapshot version.
type PruneVersion struct {
	Cluster  string
	Manifest uploader.ObjectInfo
	Data     []uploader.ObjectInfo // the other objects in the version dir
	// M is the decoded manifest; nil when it does not decode (Err says
	// why): such a version is never pruned, nor any object it may name.
	M   *SegmentManifest
	Err string
}

// CaptureTime is when the version was archived: the v1 manifest's
// created_at, else (v2) the manifest object's modification time.
func (v PruneVersion) CaptureTime() time.Time {
	if v.M != nil && !v.M.CreatedAt.IsZero() {
		return v.M.CreatedAt
	}
	return v.Manifest.ModTime
}

// PruneGap is a gap marker.
type PruneGap struct {
	Cluster string
	Object  uploader.ObjectInfo
	G       *GapMarker // nil: does not decode (kept)
}

// PruneLogDir is a log-dir (root files) capture, known from its key alone.
type PruneLogDir struct {
	Object  uploader.ObjectInfo
	Root    string // the layout root it is under (v1 or v2)
	Cluster string
	Broker  int32
	Dir     string
	At      time.Time // the capture time in the key
}

// PruneTail is a tail-capture manifest.
type PruneTail struct {
	Cluster string
	Object  uploader.ObjectInfo
	T       *TailManifest // nil: does not decode (kept, with its pack)
}

// PruneObject is a data object that may be an orphan: Guard is the
// manifest whose presence would commit it.
type PruneObject struct {
	Cluster string
	Object  uploader.ObjectInfo
	Guard   string
}

// PruneMarkEntry is a deletion mark left by an earlier prune.
type PruneMarkEntry struct {
	Object uploader.ObjectInfo
	Mark   *DeletionMark // nil: does not decode (left alone, reported)
	Err    string
}

// isDeletionMarkKey reports whether key is a deletion mark
// (<root v2><cluster>/deletion-marks/<id>.json) and returns its cluster.
func isDeletionMarkKey(l Layout, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, l.RootV2())
	if !ok {
		return "", false
	}
	f := strings.Split(rest, "/")
	if len(f) != 3 || f[0] == "" || f[1] != DeletionMarkDir || !strings.HasSuffix(f[2], ".json") {
		return "", false
	}
	return f[0], true
}

// ListPruneInventory catalogs both roots of layout (one cluster, or all
// when cluster is "": archive.ListCluster, ListAll) and reads every
// manifest, gap marker, tail manifest and deletion mark, concurrency at a
// time. Objects the catalog does not recognise are never pruned.
func ListPruneInventory(ctx context.Context, b uploader.BucketReader, layout Layout, cluster string, concurrency int) (*PruneInventory, error) {
	var cat *Catalog
	var err error
	if cluster != "" {
		cat, err = ListCluster(ctx, b, layout, cluster)
	} else {
		cat, err = ListAll(ctx, b, layout)
	}
	if err != nil {
		return nil, err
	}
	inv := &PruneInventory{Sizes: map[string]int64{}}
	size := func(oi uploader.ObjectInfo) { inv.Sizes[oi.Key] = oi.Size }
	for _, v := range cat.Versions {
		size(v.Manifest)
		for _, d := range v.Data {
			size(d)
		}
		inv.Versions = append(inv.Versions, PruneVersion{Cluster: v.Key.Cluster, Manifest: v.Manifest, Data: v.Data})
	}
	for _, e := range cat.Gaps {
		size(e.Object)
		inv.Gaps = append(inv.Gaps, PruneGap{Cluster: e.Key.Cluster, Object: e.Object})
	}
	for _, e := range cat.LogDirs {
		size(e.Object)
		root := layout.Root()
		if e.Key.Version == LayoutVersionV2 {
			root = layout.RootV2()
		}
		inv.LogDirs = append(inv.LogDirs, PruneLogDir{Object: e.Object, Root: root, Cluster: e.Key.Cluster, Broker: e.Key.Broker, Dir: e.Key.LogDir, At: e.Key.CaptureTime})
	}
	for _, e := range cat.Tails {
		size(e.Object)
		inv.Tails = append(inv.Tails, PruneTail{Cluster: e.Key.Cluster, Object: e.Object})
	}
	for _, e := range cat.Packs {
		size(e.Object)
		inv.Packs = append(inv.Packs, PruneObject{Cluster: e.Key.Cluster, Object: e.Object,
			Guard: layout.TailManifestKey(e.Key.Cluster, e.Key.Broker, e.Key.Seq, e.Key.VersionID)})
	}
	for _, e := range cat.Orphans {
		size(e.Object)
		inv.Orphans = append(inv.Orphans, PruneObject{Cluster: e.Key.Cluster, Object: e.Object, Guard: e.Key.VersionDir(layout) + ManifestName})
	}
	for _, oi := range cat.Unknown {
		if c, ok := isDeletionMarkKey(layout, oi.Key); ok && (cluster == "" || c == cluster) {
			size(oi)
			inv.Marks = append(inv.Marks, PruneMarkEntry{Object: oi})
		}
	}
	var mu sync.Mutex

	// Read the small objects. One that vanished since the listing was
	// pruned meanwhile: it is dropped.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	gone := map[string]bool{}
	read := func(key string, decode func([]byte) error) {
		g.Go(func() error {
			data, err := getSmall(gctx, b, key, MaxManifestSize)
			if errors.Is(err, uploader.ErrNotFound) {
				mu.Lock()
				gone[key] = true
				mu.Unlock()
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", key, err)
			}
			return decode(data)
		})
	}
	for i := range inv.Versions {
		v := &inv.Versions[i]
		read(v.Manifest.Key, func(data []byte) error {
			m, err := DecodeSegmentManifest(v.Manifest.Key, data)
			if err == nil {
				err = checkManifestKey(layout, v.Manifest.Key, m)
			}
			if err != nil {
				v.Err = err.Error()
			} else {
				v.M = m
			}
			return nil
		})
	}
	for i := range inv.Gaps {
		e := &inv.Gaps[i]
		read(e.Object.Key, func(data []byte) error {
			e.G, _ = DecodeGapMarker(e.Object.Key, data)
			return nil
		})
	}
	for i := range inv.Tails {
		e := &inv.Tails[i]
		read(e.Object.Key, func(data []byte) error {
			e.T, _ = DecodeTailManifest(e.Object.Key, data)
			return nil
		})
	}
	for i := range inv.Marks {
		e := &inv.Marks[i]
		read(e.Object.Key, func(data []byte) error {
			m, err := DecodeDeletionMark(e.Object.Key, data)
			if err != nil {
				e.Err = err.Error()
			} else {
				e.Mark = m
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		inv.Versions = filterGone(inv.Versions, gone, func(v PruneVersion) string { return v.Manifest.Key })
		inv.Gaps = filterGone(inv.Gaps, gone, func(v PruneGap) string { return v.Object.Key })
		inv.Tails = filterGone(inv.Tails, gone, func(v PruneTail) string { return v.Object.Key })
		inv.Marks = filterGone(inv.Marks, gone, func(v PruneMarkEntry) string { return v.Object.Key })
	}
	return inv, nil
}

func filterGone[T any](s []T, gone map[string]bool, key func(T) string) []T {
	out := s[:0]
	for _, e := range s {
		if !gone[key(e)] {
			out = append(out, e)
		}
	}
	return out
}

// getSmall reads a whole small object, at most limit bytes.
func getSmall(ctx context.Context, b uploader.BucketReader, key string, limit int64) ([]byte, error) {
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("object %s: larger than %d bytes", key, limit)
	}
	return data, nil
}

// checkManifestKey checks that a manifest is the one its key names (the
// partition, incarnation, kind, base offset, broker and version id) and
// that its objects are in its version dir: one that is not is left out by
// restore, so prune must not let it supersede anything (it is then kept
// as undecodable).
func checkManifestKey(l Layout, key string, m *SegmentManifest) error {
	k, ok := ParseKey(l, key)
	if !ok || !k.IsManifest() {
		return fmt.Errorf("manifest %s: not a manifest key", key)
	}
	id := m.ContentID
	if k.Version == LayoutVersionV2 {
		id = m.UploadID
	}
	kind := KindSegment
	if k.Kind == KeySnapshotManifest {
		kind = KindKRaftSnapshot
	}
	if k.Cluster != m.ClusterID || k.Topic != m.Topic || k.Partition != m.Partition || k.TopicID != m.TopicID || kind != m.Kind ||
		k.BaseOffset != m.BaseOffset || k.Broker != m.BrokerID || k.VersionID != id || kind == KindKRaftSnapshot && k.SnapshotEpoch != m.SnapshotEpoch {
		return fmt.Errorf("manifest %s: names %s %s-%d (%s) base %d of broker %d, version %s: not the one its key names", key, m.Kind, m.Topic, m.Partition, m.TopicID, m.BaseOffset, m.BrokerID, id)
	}
	dir := k.VersionDir(l)
	for _, f := range m.Files {
		for _, obj := range []string{f.Object.Key, f.DataKey} {
			if obj != "" && !strings.HasPrefix(obj, dir) {
				return fmt.Errorf("manifest %s: file %s is stored at %s, outside its version dir", key, f.Name, obj)
			}
		}
	}
	return nil
}
