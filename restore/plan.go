// Package restore rebuilds Kafka partition directories from the archive:
// plan (list manifests, pick a contiguous chain of segment versions per
// partition, report gaps), fetch and verify every object, write each
// partition into a temp dir, cut it at a point in time if asked, rebuild
// what must be rebuilt, fsync, and rename it into place.
//
// It never writes outside the target dirs, never touches an existing
// non-empty partition dir without Force, and validates every name that comes
// from the bucket before using it in a path.
package restore

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// Source is what restore reads from the archive.
type Source interface {
	List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error
	// Get reads a small object whole (at most max bytes).
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	// Open streams a file's object back as raw bytes, verified against rec:
	// Read returns an error wrapping uploader.ErrIntegrity instead of io.EOF
	// on any size or digest mismatch, and never yields more than rec.Size bytes.
	Open(ctx context.Context, rec uploader.FileRecord) (io.ReadCloser, error)
}

// Selection chooses what to restore.
type Selection struct {
	Cluster    string         // "" = the only cluster in the bucket
	Broker     int32          // -1 = any; else prefer (and, for root files, use) this broker's copies
	Topics     *regexp.Regexp // nil = all
	Partitions []int32        // empty = all
	TopicID    string         // "" = the newest incarnation of each topic
	// Metadata includes the KRaft metadata log (__cluster_metadata) and, with
	// Broker set, the log-dir root files: a whole-broker rebuild.
	Metadata bool
}

// Segment is one planned segment version.
type Segment struct {
	Manifest *uploader.SegmentManifest
	Key      string // manifest key
}

// PartitionPlan is the chain of segments restore will write for a partition.
type PartitionPlan struct {
	Topic       string
	Partition   int32
	TopicID     string
	Segments    []Segment // by base offset, contiguous except Gaps
	Snapshots   []Segment // KRaft snapshots (__cluster_metadata)
	Gaps        []Gap
	Brokers     []int32 // whose copies are used
	Bytes       int64   // raw bytes to write
	FirstOffset int64
	LastOffset  int64 // last offset of the chain (before any cut)
	Incarnation int   // how many other topic ids were seen for this partition
}

// Gap is a range of offsets the archive does not hold.
type Gap struct {
	From, To int64 // [From, To)
	Reason   string
}

// Plan is the whole restore plan.
type Plan struct {
	Cluster    string
	Partitions []*PartitionPlan
	LogDirs    []*uploader.LogDirManifest // newest root capture per original log dir (whole-broker rebuilds)
}

// parsedKey is what a manifest key says, before the manifest is read.
type parsedKey struct {
	cluster, topic, topicID, kind string
	partition                     int32
	base                          int64
	broker                        int32
}

// parseManifestKey parses .../v1/<cluster>/topics/<topic>/<p>/<id>/(segments|snapshots)/<base>/<broker>-<content>/manifest.json.
func parseManifestKey(l uploader.Layout, key string) (parsedKey, bool) {
	rest, ok := strings.CutPrefix(key, l.Root())
	if !ok {
		return parsedKey{}, false
	}
	f := strings.Split(rest, "/")
	if len(f) != 9 || f[1] != "topics" || f[8] != uploader.ManifestName {
		return parsedKey{}, false
	}
	var k parsedKey
	k.cluster, k.topic, k.topicID = f[0], f[2], f[4]
	switch f[5] {
	case "segments":
		k.kind = uploader.KindSegment
	case "snapshots":
		k.kind = uploader.KindKRaftSnapshot
	default:
		return parsedKey{}, false
	}
	if _, err := fmt.Sscanf(f[3], "%d", &k.partition); err != nil {
		return parsedKey{}, false
	}
	if _, err := fmt.Sscanf(strings.SplitN(f[6], "-", 2)[0], "%d", &k.base); err != nil {
		return parsedKey{}, false
	}
	if _, err := fmt.Sscanf(strings.SplitN(f[7], "-", 2)[0], "%d", &k.broker); err != nil {
		return parsedKey{}, false
	}
	return k, true
}

func (s *Selection) admits(k parsedKey) bool {
	if s.Cluster != "" && k.cluster != s.Cluster {
		return false
	}
	if k.topic == "__cluster_metadata" {
		return s.Metadata && (s.Broker < 0 || k.broker == s.Broker)
	}
	if s.Topics != nil && !s.Topics.MatchString(k.topic) {
		return false
	}
	if s.TopicID != "" && k.topicID != s.TopicID {
		return false
	}
	if len(s.Partitions) > 0 {
		found := false
		for _, p := range s.Partitions {
			found = found || p == k.partition
		}
		if !found {
			return false
		}
	}
	return true
}

// MakePlan lists the archive and plans the restore of sel.
func MakePlan(ctx context.Context, src Source, layout uploader.Layout, sel Selection, concurrency int) (*Plan, error) {
	var keys []string
	clusters := map[string]bool{}
	err := src.List(ctx, layout.Root(), func(oi uploader.ObjectInfo) error {
		k, ok := parseManifestKey(layout, oi.Key)
		if !ok {
			if c, ok := logDirKeyCluster(layout, oi.Key); ok {
				clusters[c] = true
			}
			return nil
		}
		clusters[k.cluster] = true
		if sel.admits(k) {
			keys = append(keys, oi.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list archive: %w", err)
	}
	if sel.Cluster == "" {
		if len(clusters) > 1 {
			var cs []string
			for c := range clusters {
				cs = append(cs, c)
			}
			sort.Strings(cs)
			return nil, fmt.Errorf("the archive holds several clusters (%s): choose one with --cluster", strings.Join(cs, ", "))
		}
		for c := range clusters {
			sel.Cluster = c
		}
	}
	plan := &Plan{Cluster: sel.Cluster}
	if sel.Metadata && sel.Broker >= 0 {
		if plan.LogDirs, err = latestLogDirs(ctx, src, layout, sel.Cluster, sel.Broker); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return plan, nil
	}
	mans := make([]*uploader.SegmentManifest, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for i, key := range keys {
		g.Go(func() error {
			data, err := src.Get(gctx, key, uploader.MaxManifestSize)
			if err != nil {
				return fmt.Errorf("read manifest %s: %w", key, err)
			}
			m, err := uploader.DecodeSegmentManifest(key, data)
			if err != nil {
				return err
			}
			if err := checkManifest(layout, key, m); err != nil {
				return err
			}
			mans[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	type pk struct {
		topic string
		p     int32
	}
	groups := map[pk][]Segment{}
	for i, m := range mans {
		groups[pk{m.Topic, m.Partition}] = append(groups[pk{m.Topic, m.Partition}], Segment{Manifest: m, Key: keys[i]})
	}
	for k, segs := range groups {
		plan.Partitions = append(plan.Partitions, planPartition(k.topic, k.p, segs, sel.Broker))
	}
	sort.Slice(plan.Partitions, func(i, j int) bool {
		a, b := plan.Partitions[i], plan.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return plan, nil
}

// logDirKeyCluster returns the cluster of a log-dir capture key
// (<root><cluster>/brokers/<id>/logdirs/<dir>/<time>.json).
func logDirKeyCluster(l uploader.Layout, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, l.Root())
	if !ok {
		return "", false
	}
	f := strings.Split(rest, "/")
	if len(f) != 6 || f[1] != "brokers" || f[3] != "logdirs" {
		return "", false
	}
	return f[0], true
}

// checkManifest validates every name and key a manifest carries before any
// of them is used: a hostile manifest must not steer writes or reads.
func checkManifest(layout uploader.Layout, key string, m *uploader.SegmentManifest) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("manifest %s: %s", key, fmt.Sprintf(format, a...))
	}
	if err := segment.ValidateTopic(m.Topic); err != nil {
		return bad("%v", err)
	}
	if m.Partition < 0 {
		return bad("negative partition %d", m.Partition)
	}
	if m.TopicID != uploader.NoTopicID {
		if err := index.ValidateTopicID(m.TopicID); err != nil {
			return bad("%v", err)
		}
	}
	if m.BaseOffset < 0 || m.Summary == nil {
		return bad("bad base offset %d or no summary", m.BaseOffset)
	}
	dir := strings.TrimSuffix(key, uploader.ManifestName)
	if !strings.HasPrefix(dir, layout.PartitionPrefix(m.ClusterID, m.Topic, m.Partition)) {
		return bad("names topic %s partition %d but is stored elsewhere", m.Topic, m.Partition)
	}
	seen := map[string]bool{}
	for i, f := range m.Files {
		n, ok := segment.ParseFileName(f.Name)
		if !ok || n.Suffix != "" || strings.ContainsAny(f.Name, `/\`) || seen[f.Name] {
			return bad("illegal or repeated file name %q", f.Name)
		}
		seen[f.Name] = true
		if i == 0 {
			want := segment.FormatName(m.BaseOffset, segment.KindLog)
			if m.Kind == uploader.KindKRaftSnapshot {
				want = segment.FileName{BaseOffset: m.BaseOffset, Epoch: m.SnapshotEpoch, Kind: segment.KindCheckpoint}.String()
			}
			if f.Name != want {
				return bad("first file %q is not %q", f.Name, want)
			}
		} else if n.Kind != segment.KindSnapshot && n.BaseOffset != m.BaseOffset {
			return bad("file %q does not belong to segment %d", f.Name, m.BaseOffset)
		}
		if f.Size < 0 || f.Object.Size < 0 || !strings.HasPrefix(f.Object.Key, dir) {
			return bad("file %q: bad size or object key %q outside the segment's prefix", f.Name, f.Object.Key)
		}
	}
	return nil
}

// planPartition picks the incarnation, the versions and the chain.
func planPartition(topic string, p int32, segs []Segment, broker int32) *PartitionPlan {
	pp := &PartitionPlan{Topic: topic, Partition: p, FirstOffset: -1, LastOffset: -1}
	// Incarnation: the topic id with the newest manifest.
	newest := map[string]time.Time{}
	for _, s := range segs {
		if t := s.Manifest.CreatedAt; t.After(newest[s.Manifest.TopicID]) {
			newest[s.Manifest.TopicID] = t
		}
	}
	for id, t := range newest {
		if pp.TopicID == "" || t.After(newest[pp.TopicID]) {
			pp.TopicID = id
		}
	}
	pp.Incarnation = len(newest) - 1
	// Versions: per broker, per base, the newest version (compaction rewrites).
	byBroker := map[int32]map[int64]Segment{}
	var snaps []Segment
	for _, s := range segs {
		m := s.Manifest
		if m.TopicID != pp.TopicID {
			continue
		}
		if m.Kind == uploader.KindKRaftSnapshot {
			snaps = append(snaps, s)
			continue
		}
		if byBroker[m.BrokerID] == nil {
			byBroker[m.BrokerID] = map[int64]Segment{}
		}
		if old, ok := byBroker[m.BrokerID][m.BaseOffset]; !ok || m.CreatedAt.After(old.Manifest.CreatedAt) {
			byBroker[m.BrokerID][m.BaseOffset] = s
		}
	}
	// Primary replica: the selected broker, else the one whose copy reaches furthest.
	primary, best := broker, int64(-2)
	if _, ok := byBroker[broker]; !ok {
		for b, m := range byBroker {
			for _, s := range m {
				if s.Manifest.Summary.LastOffset > best || s.Manifest.Summary.LastOffset == best && b < primary {
					primary, best = b, s.Manifest.Summary.LastOffset
				}
			}
		}
	}
	chain := dropSuperseded(byBroker[primary])
	// Fill gaps with other replicas' segments that fit exactly.
	for b, m := range byBroker {
		if b == primary {
			continue
		}
		for _, s := range dropSuperseded(m) {
			if fits(chain, s) {
				chain = append(chain, s)
				sort.Slice(chain, func(i, j int) bool { return chain[i].Manifest.BaseOffset < chain[j].Manifest.BaseOffset })
			}
		}
	}
	pp.Segments = chain
	used := map[int32]bool{}
	for i, s := range chain {
		m := s.Manifest
		used[m.BrokerID] = true
		for _, f := range m.Files {
			pp.Bytes += f.Size
		}
		if i == 0 {
			pp.FirstOffset = m.BaseOffset
		}
		if m.Summary.LastOffset >= 0 {
			pp.LastOffset = m.Summary.LastOffset
		}
		if i > 0 {
			prev := chain[i-1].Manifest
			if prev.NextSegmentBase < m.BaseOffset {
				pp.Gaps = append(pp.Gaps, Gap{From: prev.NextSegmentBase, To: m.BaseOffset, Reason: "segments missing from the archive"})
			}
		}
	}
	for b := range used {
		pp.Brokers = append(pp.Brokers, b)
	}
	sort.Slice(pp.Brokers, func(i, j int) bool { return pp.Brokers[i] < pp.Brokers[j] })
	// KRaft snapshots: keep the newest of each <offset, epoch>.
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Manifest.CreatedAt.After(snaps[j].Manifest.CreatedAt) })
	seenSnap := map[[2]int64]bool{}
	for _, s := range snaps {
		k := [2]int64{s.Manifest.BaseOffset, int64(s.Manifest.SnapshotEpoch)}
		if !seenSnap[k] && (broker < 0 || s.Manifest.BrokerID == primary) {
			seenSnap[k] = true
			pp.Snapshots = append(pp.Snapshots, s)
			for _, f := range s.Manifest.Files {
				pp.Bytes += f.Size
			}
		}
	}
	sort.Slice(pp.Snapshots, func(i, j int) bool { return pp.Snapshots[i].Manifest.BaseOffset < pp.Snapshots[j].Manifest.BaseOffset })
	return pp
}

// dropSuperseded sorts one broker's versions by base and drops any segment
// covered by a newer one (a cleaner that merged several segments into one).
func dropSuperseded(m map[int64]Segment) []Segment {
	var all []Segment
	for _, s := range m {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Manifest.BaseOffset < all[j].Manifest.BaseOffset })
	var out []Segment
	for _, s := range all {
		covered := false
		for _, t := range all {
			tm, sm := t.Manifest, s.Manifest
			if tm != sm && tm.CreatedAt.After(sm.CreatedAt) && tm.BaseOffset <= sm.BaseOffset && sm.BaseOffset < tm.NextSegmentBase {
				covered = true
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// fits reports whether s fills part of a gap in chain without overlapping.
func fits(chain []Segment, s Segment) bool {
	lo, hi := s.Manifest.BaseOffset, s.Manifest.NextSegmentBase
	if hi <= lo {
		return false
	}
	for i, c := range chain {
		cl, ch := c.Manifest.BaseOffset, c.Manifest.NextSegmentBase
		if lo < ch && cl < hi {
			return false // overlaps
		}
		// It must sit inside a gap: after a segment that ends at or before lo...
		if i+1 < len(chain) && ch <= lo && hi <= chain[i+1].Manifest.BaseOffset {
			return true
		}
	}
	return len(chain) == 0 || hi <= chain[0].Manifest.BaseOffset
}

// latestLogDirs returns the newest capture of each of a broker's log dirs.
func latestLogDirs(ctx context.Context, src Source, layout uploader.Layout, cluster string, broker int32) ([]*uploader.LogDirManifest, error) {
	latest := map[string]string{} // dir key -> newest object key
	prefix := layout.LogDirPrefix(cluster, broker)
	var mu sync.Mutex
	err := src.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
		rest := strings.TrimPrefix(oi.Key, prefix)
		dir, _, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		mu.Lock()
		if oi.Key > latest[dir] {
			latest[dir] = oi.Key
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []*uploader.LogDirManifest
	for _, key := range latest {
		data, err := src.Get(ctx, key, uploader.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		m, err := uploader.DecodeLogDirManifest(key, data)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LogDir < out[j].LogDir })
	return out, nil
}

// Clusters lists the cluster ids the archive holds.
func Clusters(ctx context.Context, src Source, layout uploader.Layout) ([]string, error) {
	seen := map[string]bool{}
	err := src.List(ctx, layout.Root(), func(oi uploader.ObjectInfo) error {
		if k, ok := parseManifestKey(layout, oi.Key); ok {
			seen[k.cluster] = true
		} else if c, ok := logDirKeyCluster(layout, oi.Key); ok {
			seen[c] = true
		}
		return nil
	})
	var out []string
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, err
}
