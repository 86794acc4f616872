package archive

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/uploader"
)

// Lister is the part of a bucket a catalog needs.
type Lister interface {
	List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error
}

// Entry is one classified object.
type Entry struct {
	Key    KeyInfo
	Object uploader.ObjectInfo
}

// Version is one archived version of a segment or KRaft snapshot: its
// manifest (not decoded: see DecodeManifests) and the data objects listed in
// its version dir.
type Version struct {
	Key      KeyInfo // of the manifest: Kind is KeySegmentManifest or KeySnapshotManifest
	Manifest uploader.ObjectInfo
	Data     []uploader.ObjectInfo // objects in the version dir, by key
}

// ManifestKey is the version's manifest key.
func (v Version) ManifestKey() string { return v.Manifest.Key }

// Catalog is one listing of the archive, both layout versions, with typed
// entries. Every slice is sorted by key.
type Catalog struct {
	Layout   Layout
	Versions []Version
	Gaps     []Entry
	LogDirs  []Entry
	Tails    []Entry // tail manifests (KeyTailManifest)
	Packs    []Entry // tail packs (KeyTailPack)
	Claims   []Entry
	// Divergences are standbys' divergence reports (KeyDivergence).
	Divergences []Entry
	// Orphans are data objects whose version dir holds no manifest: an
	// upload interrupted before its commit (or one still in progress: see
	// ModTime), never read by restore.
	Orphans []Entry
	// Unknown are objects under the roots that are no segvault key.
	Unknown []uploader.ObjectInfo
}

// ListAll catalogs everything under the layout's roots.
func ListAll(ctx context.Context, b Lister, l Layout) (*Catalog, error) {
	return listCatalog(ctx, b, l, l.Root(), l.RootV2())
}

// ListCluster catalogs one cluster.
func ListCluster(ctx context.Context, b Lister, l Layout, cluster string) (*Catalog, error) {
	return listCatalog(ctx, b, l, l.ClusterPrefix(cluster), l.RootV2()+cluster+"/")
}

// ListPartition catalogs one partition (every incarnation, broker, version).
func ListPartition(ctx context.Context, b Lister, l Layout, cluster, topic string, partition int32) (*Catalog, error) {
	return listCatalog(ctx, b, l, l.PartitionPrefix(cluster, topic, partition), l.PartitionPrefixV2(cluster, topic, partition))
}

func listCatalog(ctx context.Context, b Lister, l Layout, prefixes ...string) (*Catalog, error) {
	c := &Catalog{Layout: l}
	versions := map[string]*Version{} // version dir -> version
	var data []Entry
	var mu sync.Mutex // a store may call fn from several goroutines
	for _, prefix := range prefixes {
		err := b.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
			mu.Lock()
			defer mu.Unlock()
			k, ok := ParseKey(l, oi.Key)
			if !ok {
				c.Unknown = append(c.Unknown, oi)
				return nil
			}
			e := Entry{Key: k, Object: oi}
			switch k.Kind {
			case KeySegmentManifest, KeySnapshotManifest:
				d := k.VersionDir(l)
				v := versions[d]
				if v == nil {
					v = &Version{}
					versions[d] = v
				}
				v.Key, v.Manifest = k, oi
			case KeySegmentData, KeySnapshotData:
				data = append(data, e)
			case KeyGap:
				c.Gaps = append(c.Gaps, e)
			case KeyLogDir:
				c.LogDirs = append(c.LogDirs, e)
			case KeyTailManifest:
				c.Tails = append(c.Tails, e)
			case KeyTailPack:
				c.Packs = append(c.Packs, e)
			case KeyClaim:
				c.Claims = append(c.Claims, e)
			case KeyDivergence:
				c.Divergences = append(c.Divergences, e)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
	}
	for _, e := range data {
		if v := versions[e.Key.VersionDir(l)]; v != nil && v.Manifest.Key != "" {
			v.Data = append(v.Data, e.Object)
		} else {
			c.Orphans = append(c.Orphans, e)
		}
	}
	for _, v := range versions {
		if v.Manifest.Key != "" {
			sort.Slice(v.Data, func(i, j int) bool { return v.Data[i].Key < v.Data[j].Key })
			c.Versions = append(c.Versions, *v)
		}
	}
	sort.Slice(c.Versions, func(i, j int) bool { return c.Versions[i].Manifest.Key < c.Versions[j].Manifest.Key })
	for _, es := range [][]Entry{c.Gaps, c.LogDirs, c.Tails, c.Packs, c.Claims, c.Divergences, c.Orphans} {
		sort.Slice(es, func(i, j int) bool { return es[i].Object.Key < es[j].Object.Key })
	}
	sort.Slice(c.Unknown, func(i, j int) bool { return c.Unknown[i].Key < c.Unknown[j].Key })
	return c, nil
}

// Clusters lists the clusters the catalog holds a segment or snapshot
// version or a log-dir capture of.
func (c *Catalog) Clusters() []string {
	seen := map[string]bool{}
	for _, v := range c.Versions {
		seen[v.Key.Cluster] = true
	}
	for _, e := range c.LogDirs {
		seen[e.Key.Cluster] = true
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Brokers lists the brokers of cluster whose versions or log-dir captures
// the catalog holds.
func (c *Catalog) Brokers(cluster string) []int32 {
	seen := map[int32]bool{}
	for _, v := range c.Versions {
		if v.Key.Cluster == cluster {
			seen[v.Key.Broker] = true
		}
	}
	for _, e := range c.LogDirs {
		if e.Key.Cluster == cluster {
			seen[e.Key.Broker] = true
		}
	}
	out := make([]int32, 0, len(seen))
	for b := range seen {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// LatestLogDirs returns the newest capture of each log dir of one broker
// (by the capture time in its key), sorted by key.
func (c *Catalog) LatestLogDirs(cluster string, broker int32) []Entry {
	latest := map[string]Entry{}
	for _, e := range c.LogDirs {
		if e.Key.Cluster != cluster || e.Key.Broker != broker {
			continue
		}
		if old, ok := latest[e.Key.LogDir]; !ok || e.Key.CaptureTime.After(old.Key.CaptureTime) ||
			e.Key.CaptureTime.Equal(old.Key.CaptureTime) && e.Key.Version > old.Key.Version {
			latest[e.Key.LogDir] = e
		}
	}
	out := make([]Entry, 0, len(latest))
	for _, e := range latest {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Object.Key < out[j].Object.Key })
	return out
}

// ManifestResult is one version's decoded manifest, or why there is none:
// ReadErr when the object could not be read (a transport problem), Err when
// it does not decode.
type ManifestResult struct {
	Manifest *SegmentManifest
	Data     []byte // the manifest's bytes, when read
	ReadErr  error
	Err      error
}

// DecodeManifests reads and decodes the manifests of vs with at most
// concurrency reads in flight; get reads a whole object of at most max
// bytes. It stops early only when ctx is done.
func DecodeManifests(ctx context.Context, get func(ctx context.Context, key string, max int64) ([]byte, error), vs []Version, concurrency int) ([]ManifestResult, error) {
	out := make([]ManifestResult, len(vs))
	var g errgroup.Group
	g.SetLimit(max(concurrency, 1))
	for i, v := range vs {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			data, err := get(ctx, v.Manifest.Key, MaxManifestSize)
			if err != nil {
				out[i].ReadErr = fmt.Errorf("read manifest %s: %w", v.Manifest.Key, err)
				return nil
			}
			out[i].Data = data
			out[i].Manifest, out[i].Err = DecodeSegmentManifest(v.Manifest.Key, data)
			return nil
		})
	}
	g.Wait()
	return out, ctx.Err()
}
