package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
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
	Packs   []uploader.ObjectInfo
	Orphans []uploader.ObjectInfo
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

// PruneMarkEntry is a deletion mark left by an earlier prune.
type PruneMarkEntry struct {
	Object uploader.ObjectInfo
	Mark   *DeletionMark // nil: does not decode (left alone, reported)
	Err    string
}

// pruneKeyKind classifies key (under root) for prune; dir is the version
// dir of segment and snapshot objects.
func pruneKeyKind(root, key string) (kind, cluster, dir string, f []string) {
	rest, ok := strings.CutPrefix(key, root)
	if !ok {
		return "", "", "", nil
	}
	f = strings.Split(rest, "/")
	if len(f) < 3 || f[0] == "" {
		return "", "", "", nil
	}
	cluster = f[0]
	switch {
	case f[1] == "topics" && len(f) == 9 && (f[5] == "segments" || f[5] == "snapshots"):
		dir = root + strings.Join(f[:8], "/") + "/"
		if f[8] == ManifestName {
			return "manifest", cluster, dir, f
		}
		return "data", cluster, dir, f
	case f[1] == "topics" && len(f) == 7 && f[5] == "gaps" && strings.HasSuffix(f[6], ".json"):
		return "gap", cluster, "", f
	case f[1] == "brokers" && len(f) == 6 && f[3] == "logdirs" && strings.HasSuffix(f[5], ".json"):
		return "logdir", cluster, "", f
	case f[1] == "brokers" && len(f) == 5 && f[3] == "tails" && strings.HasSuffix(f[4], ".json"):
		return "tail", cluster, "", f
	case f[1] == "brokers" && len(f) == 5 && f[3] == "tails" && strings.HasSuffix(f[4], ".pack"):
		return "pack", cluster, "", f
	case f[1] == DeletionMarkDir && len(f) == 3 && strings.HasSuffix(f[2], ".json"):
		return "mark", cluster, "", f
	}
	return "", "", "", nil
}

// ListPruneInventory lists both roots of layout (one cluster, or all when
// cluster is "") and reads every manifest, gap marker, tail manifest and
// deletion mark, concurrency at a time.
func ListPruneInventory(ctx context.Context, b uploader.BucketReader, layout Layout, cluster string, concurrency int) (*PruneInventory, error) {
	inv := &PruneInventory{Sizes: map[string]int64{}}
	versions := map[string]*PruneVersion{}
	data := map[string][]uploader.ObjectInfo{}
	var dataCluster = map[string]string{}
	var mu sync.Mutex
	for _, root := range []string{layout.Root(), layout.RootV2()} {
		prefix := root
		if cluster != "" {
			prefix += cluster + "/"
		}
		err := b.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
			mu.Lock()
			defer mu.Unlock()
			kind, c, dir, f := pruneKeyKind(root, oi.Key)
			if kind == "" {
				return nil
			}
			inv.Sizes[oi.Key] = oi.Size
			switch kind {
			case "manifest":
				v := versions[dir]
				if v == nil {
					v = &PruneVersion{Cluster: c}
					versions[dir] = v
				}
				v.Manifest = oi
			case "data":
				data[dir] = append(data[dir], oi)
				dataCluster[dir] = c
			case "gap":
				inv.Gaps = append(inv.Gaps, PruneGap{Cluster: c, Object: oi})
			case "logdir":
				var broker int32
				if _, err := fmt.Sscanf(f[2], "%d", &broker); err != nil {
					return nil
				}
				at, err := time.Parse(CaptureTimeFormat, strings.TrimSuffix(f[5], ".json"))
				if err != nil {
					return nil // not a capture this code wrote: never pruned
				}
				inv.LogDirs = append(inv.LogDirs, PruneLogDir{Object: oi, Root: root, Cluster: c, Broker: broker, Dir: f[4], At: at})
			case "tail":
				inv.Tails = append(inv.Tails, PruneTail{Cluster: c, Object: oi})
			case "pack":
				inv.Packs = append(inv.Packs, oi)
			case "mark":
				inv.Marks = append(inv.Marks, PruneMarkEntry{Object: oi})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
	}
	for dir, objs := range data {
		if v := versions[dir]; v != nil {
			v.Data = objs
		} else {
			inv.Orphans = append(inv.Orphans, objs...)
		}
	}
	for _, v := range versions {
		sort.Slice(v.Data, func(i, j int) bool { return v.Data[i].Key < v.Data[j].Key })
		inv.Versions = append(inv.Versions, *v)
	}
	sort.Slice(inv.Versions, func(i, j int) bool { return inv.Versions[i].Manifest.Key < inv.Versions[j].Manifest.Key })
	sort.Slice(inv.Orphans, func(i, j int) bool { return inv.Orphans[i].Key < inv.Orphans[j].Key })

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
