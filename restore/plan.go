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
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/archive"
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
	Open(ctx context.Context, rec archive.FileRecord) (io.ReadCloser, error)
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
	// GapMarkers reads the agents' gap markers: a marked segment no
	// archived copy covers becomes a Gap, and a partition with markers only
	// comes back empty at the marked end (PartitionPlan.EmptyAt).
	GapMarkers bool
	// LeaveOutBad reports a manifest or gap marker that does not decode or
	// verify in Plan.Bad and plans without it (its segment then comes from
	// another replica's copy, or is a gap), instead of failing the plan.
	LeaveOutBad bool
	// RolledOnly plans rolled (archived) segments only, without the tail
	// captures of active segments (restore/tail.go).
	RolledOnly bool
}

// Segment is one planned segment version.
type Segment struct {
	Manifest *archive.SegmentManifest
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
	// EmptyAt, for a partition the archive knows of (captured root
	// checkpoints, gap markers) but holds no segment of, is its last known
	// log end: restore writes an empty segment there, as Kafka leaves a log
	// after retention, so offsets consumers have seen are never reused. -1
	// otherwise.
	EmptyAt int64
	// TailAt, for a partition with archived segments whose captured root
	// checkpoints name a log end beyond the last archived segment's next
	// base (the active segment was never archived), is that log end: a
	// full restore writes an empty segment there and reports the offsets
	// between as a gap, so they are never reused. 0 otherwise.
	TailAt int64
	// Tail, when the archive holds tail captures of the partition, says
	// what they add (restore/tail.go); nil otherwise.
	Tail *TailPlan
}

// DropTail forgets the unarchived tail (TailAt and its gap): a
// point-in-time restore asks for an earlier state.
func (pp *PartitionPlan) DropTail() {
	pp.TailAt = 0
	gaps := pp.Gaps[:0]
	for _, g := range pp.Gaps {
		if !g.Tail {
			gaps = append(gaps, g)
		}
	}
	pp.Gaps = gaps
}

// Gap is a range of offsets the archive does not hold.
type Gap struct {
	// Tail: the unarchived end of the log (PartitionPlan.TailAt); a
	// point-in-time restore, which asks for an earlier state, leaves it out.
	Tail   bool   `json:"-"`
	From   int64  `json:"from"` // [From, To)
	To     int64  `json:"to"`
	Reason string `json:"reason"`
}

// Plan is the whole restore plan.
type Plan struct {
	Cluster    string
	Partitions []*PartitionPlan
	LogDirs    []*archive.LogDirManifest // newest root capture per original log dir (whole-broker rebuilds)
	// Brokers are the broker ids the cluster's archive holds.
	Brokers []int32
	// Bad lists the manifests and gap markers that did not decode or
	// verify: they were left out of the plan (their partitions fall back to
	// other replicas' copies where there are any). A restore that had any
	// is not a success.
	Bad []BadObject
	// WholeBroker is set for a whole-broker rebuild (Selection.Metadata
	// with a broker).
	WholeBroker bool
	broker      int32
}

// BadObject is an archive object left out of the plan.
type BadObject struct {
	Key string `json:"key"`
	Err string `json:"error"`
}

// NoBrokerError is returned when the selected broker is not in the archive.
type NoBrokerError struct {
	Broker  int32
	Cluster string
	Brokers []int32
}

func (e *NoBrokerError) Error() string {
	var b []string
	for _, id := range e.Brokers {
		b = append(b, fmt.Sprint(id))
	}
	held := "no broker"
	if len(b) > 0 {
		held = "brokers " + strings.Join(b, ", ")
	}
	return fmt.Sprintf("broker %d is not in the archive of cluster %s: it holds %s", e.Broker, e.Cluster, held)
}

// MissingMetadata says what a whole-broker rebuild lacks to boot the broker
// into its old cluster ("" when nothing): without an archived
// __cluster_metadata segment or snapshot, Kafka would format a new, empty
// metadata log under the old cluster id.
func (p *Plan) MissingMetadata() string {
	if !p.WholeBroker {
		return ""
	}
	var missing []string
	found := false
	for _, pp := range p.Partitions {
		if pp.Topic == metadataTopic && (len(pp.Segments) > 0 || len(pp.Snapshots) > 0) {
			found = true
		}
	}
	if !found {
		missing = append(missing, fmt.Sprintf("no %s-0 segment or snapshot of broker %d", metadataTopic, p.broker))
	}
	meta := false
	for _, ld := range p.LogDirs {
		for _, f := range ld.Files {
			meta = meta || f.Name == index.MetaPropertiesFile
		}
	}
	if !meta {
		missing = append(missing, fmt.Sprintf("no captured %s of broker %d", index.MetaPropertiesFile, p.broker))
	}
	return strings.Join(missing, "; ")
}

const metadataTopic = "__cluster_metadata"

// admits reports whether the object of key k (archive.ParseKey) is selected.
func (s *Selection) admits(k archive.KeyInfo) bool {
	if s.Cluster != "" && k.Cluster != s.Cluster {
		return false
	}
	if k.Topic == "__cluster_metadata" {
		return s.Metadata && (s.Broker < 0 || k.Broker == s.Broker)
	}
	if s.Topics != nil && !s.Topics.MatchString(k.Topic) {
		return false
	}
	if s.TopicID != "" && k.TopicID != s.TopicID {
		return false
	}
	if len(s.Partitions) > 0 {
		found := false
		for _, p := range s.Partitions {
			found = found || p == k.Partition
		}
		if !found {
			return false
		}
	}
	return true
}

// MakePlan lists the archive and plans the restore of sel.
func MakePlan(ctx context.Context, src Source, layout archive.Layout, sel Selection, concurrency int) (*Plan, error) {
	var keys, gapKeys []string
	var gapParsed []archive.KeyInfo
	clusters := map[string]bool{}
	brokers := map[string]map[int32]bool{}
	seenBroker := func(c string, b int32) {
		if brokers[c] == nil {
			brokers[c] = map[int32]bool{}
		}
		brokers[c][b] = true
	}
	// One listing of both layout versions.
	cat, err := archive.ListAll(ctx, src, layout)
	if err != nil {
		return nil, fmt.Errorf("list archive: %w", err)
	}
	for _, e := range cat.LogDirs {
		clusters[e.Key.Cluster] = true
		seenBroker(e.Key.Cluster, e.Key.Broker)
	}
	if sel.GapMarkers {
		for _, e := range cat.Gaps {
			if sel.admits(e.Key) {
				gapKeys, gapParsed = append(gapKeys, e.Object.Key), append(gapParsed, e.Key)
			}
		}
	}
	for _, v := range cat.Versions {
		clusters[v.Key.Cluster] = true
		seenBroker(v.Key.Cluster, v.Key.Broker)
		if sel.admits(v.Key) {
			keys = append(keys, v.Manifest.Key)
		}
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
	plan := &Plan{Cluster: sel.Cluster, WholeBroker: sel.Metadata && sel.Broker >= 0, broker: sel.Broker}
	for b := range brokers[sel.Cluster] {
		plan.Brokers = append(plan.Brokers, b)
	}
	sort.Slice(plan.Brokers, func(i, j int) bool { return plan.Brokers[i] < plan.Brokers[j] })
	if sel.Broker >= 0 && !brokers[sel.Cluster][sel.Broker] {
		return nil, &NoBrokerError{Broker: sel.Broker, Cluster: sel.Cluster, Brokers: plan.Brokers}
	}
	if plan.WholeBroker {
		if plan.LogDirs, err = latestLogDirs(ctx, src, cat, sel.Cluster, sel.Broker); err != nil {
			return nil, err
		}
	}
	// roots: the root captures whose offset checkpoints name partitions the
	// archive may hold no segment of. A partition-level restore reads them
	// too (they are not written back: only a whole-broker rebuild does that).
	roots := plan.LogDirs
	if !plan.WholeBroker {
		for _, b := range plan.Brokers {
			if sel.Broker >= 0 && b != sel.Broker {
				continue
			}
			lds, err := latestLogDirs(ctx, src, cat, sel.Cluster, b)
			if err != nil {
				if !sel.LeaveOutBad {
					return nil, err
				}
				plan.Bad = append(plan.Bad, BadObject{Key: layout.LogDirPrefix(sel.Cluster, b), Err: err.Error()})
				continue
			}
			roots = append(roots, lds...)
		}
	}
	var mu sync.Mutex
	var badManifests []archive.KeyInfo
	bad := func(key string, err error) error {
		if !sel.LeaveOutBad {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		plan.Bad = append(plan.Bad, BadObject{Key: key, Err: err.Error()})
		if k, ok := archive.ParseKey(layout, key); ok && k.IsManifest() {
			badManifests = append(badManifests, k)
		}
		return nil
	}
	mans := make([]*archive.SegmentManifest, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for i, key := range keys {
		g.Go(func() error {
			data, err := src.Get(gctx, key, archive.MaxManifestSize)
			if errors.Is(err, uploader.ErrNotFound) {
				return nil // pruned since the listing (segvault prune deletes only versions no plan picks)
			}
			if err != nil {
				return fmt.Errorf("read manifest %s: %w", key, err)
			}
			// A manifest that does not decode or verify is left out and
			// reported: one bad object must not block the rest.
			m, err := archive.DecodeSegmentManifest(key, data)
			if err != nil {
				return bad(key, err)
			}
			if err := checkManifest(layout, key, m); err != nil {
				return bad(key, err)
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
		if m != nil {
			groups[pk{m.Topic, m.Partition}] = append(groups[pk{m.Topic, m.Partition}], Segment{Manifest: m, Key: keys[i]})
		}
	}
	byPart := map[pk]*PartitionPlan{}
	for k, segs := range groups {
		pp := planPartition(k.topic, k.p, segs, sel.Broker)
		plan.Partitions = append(plan.Partitions, pp)
		byPart[k] = pp
	}
	if err := planTails(ctx, src, layout, sel, plan, concurrency); err != nil {
		return nil, err
	}
	for _, pp := range plan.Partitions {
		byPart[pk{pp.Topic, pp.Partition}] = pp
	}
	// A segment whose every manifest was left out is a gap unless another
	// copy covers it.
	for _, k := range badManifests {
		if pp := byPart[pk{k.Topic, k.Partition}]; pp != nil && k.Kind == archive.KeySegmentManifest && pp.TopicID == k.TopicID {
			badGap(pp, k.BaseOffset)
		}
	}
	// Gap markers: a segment an agent recorded as lost is a gap only where
	// no archived copy covers it (data wins over a marker).
	for i, key := range gapKeys {
		data, err := src.Get(ctx, key, 1<<20)
		if errors.Is(err, uploader.ErrNotFound) {
			continue // pruned since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("read gap marker %s: %w", key, err)
		}
		gm, err := archive.DecodeGapMarker(key, data)
		if err == nil && (gm.Topic != gapParsed[i].Topic || gm.Partition != gapParsed[i].Partition || gm.NextBase < gm.BaseOffset || gm.BaseOffset < 0) {
			err = fmt.Errorf("gap marker %s: names %s-%d offsets %d..%d, not the partition of its key", key, gm.Topic, gm.Partition, gm.BaseOffset, gm.NextBase)
		}
		if err == nil {
			err = segment.ValidateTopic(gm.Topic)
		}
		if err != nil {
			if err := bad(key, err); err != nil {
				return nil, err
			}
			continue
		}
		k := pk{gm.Topic, gm.Partition}
		pp := byPart[k]
		if pp == nil {
			pp = &PartitionPlan{Topic: gm.Topic, Partition: gm.Partition, TopicID: gm.TopicID, FirstOffset: -1, LastOffset: -1, EmptyAt: -1}
			byPart[k] = pp
			plan.Partitions = append(plan.Partitions, pp)
		}
		applyGapMarker(pp, gm)
	}
	// Partitions the brokers' captured root checkpoints name but the
	// archive holds no segment of come back empty at their last known end.
	if len(roots) > 0 {
		for _, ld := range roots {
			for _, f := range ld.Files {
				if f.Name != index.RecoveryPointFile && f.Name != index.LogStartOffsetFile && f.Name != index.ReplicationOffsetFile {
					continue
				}
				entries, err := index.ParseOffsetCheckpoint(ld.LogDir+"/"+f.Name, f.Content)
				if err != nil {
					continue // reported when the root files are written
				}
				for _, e := range entries {
					k := pk{e.Topic, e.Partition}
					if e.Topic == metadataTopic || segment.ValidateTopic(e.Topic) != nil || e.Partition < 0 || e.Offset < 0 ||
						!sel.admits(archive.KeyInfo{Cluster: sel.Cluster, Topic: e.Topic, Partition: e.Partition, TopicID: sel.TopicID}) {
						continue
					}
					pp := byPart[k]
					if pp == nil {
						if sel.TopicID != "" {
							continue
						}
						pp = &PartitionPlan{Topic: e.Topic, Partition: e.Partition, TopicID: archive.NoTopicID, FirstOffset: -1, LastOffset: -1, EmptyAt: -1}
						byPart[k] = pp
						plan.Partitions = append(plan.Partitions, pp)
					}
					if len(pp.Segments) == 0 && e.Offset > pp.EmptyAt {
						pp.EmptyAt = e.Offset
					}
					if len(pp.Segments) > 0 && e.Offset > pp.TailAt {
						pp.TailAt = e.Offset
					}
				}
			}
		}
	}
	for _, pp := range plan.Partitions {
		if len(pp.Segments) == 0 || pp.TailAt == 0 {
			continue
		}
		n := pp.Segments[len(pp.Segments)-1].Manifest.NextSegmentBase
		if pp.TailAt <= n || pp.LastOffset >= pp.TailAt {
			pp.TailAt = 0
			continue
		}
		for _, g := range pp.Gaps { // a gap marker may already cover the start
			if g.From <= n && g.To > n {
				n = g.To
			}
		}
		if n >= pp.TailAt {
			continue
		}
		pp.Gaps = append(pp.Gaps, Gap{Tail: true, From: n, To: pp.TailAt, Reason: fmt.Sprintf("not archived: the broker's log end was %d when its root files were captured", pp.TailAt)})
	}
	// A partition known only from the checkpoints takes its topic's id
	// from the topic's other partitions, where the archive holds any.
	topicIDs := map[string]string{}
	for _, pp := range plan.Partitions {
		if len(pp.Segments) > 0 && pp.TopicID != archive.NoTopicID {
			topicIDs[pp.Topic] = pp.TopicID
		}
	}
	for _, pp := range plan.Partitions {
		if id, ok := topicIDs[pp.Topic]; ok && pp.TopicID == archive.NoTopicID && len(pp.Segments) == 0 {
			pp.TopicID = id
		}
	}
	sort.Slice(plan.Bad, func(i, j int) bool { return plan.Bad[i].Key < plan.Bad[j].Key })
	sort.Slice(plan.Partitions, func(i, j int) bool {
		a, b := plan.Partitions[i], plan.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return plan, nil
}

// badGap records that the segment at base could not be read, unless a
// segment of the chain covers it.
func badGap(pp *PartitionPlan, base int64) {
	end := int64(-1)
	for _, s := range pp.Segments {
		m := s.Manifest
		if m.BaseOffset <= base && base < m.NextSegmentBase {
			return
		}
		if m.BaseOffset > base && (end < 0 || m.BaseOffset < end) {
			end = m.BaseOffset
		}
	}
	if end < 0 {
		end = max(pp.LastOffset+1, base+1)
	}
	for _, g := range pp.Gaps {
		if g.From <= base && base < g.To {
			return
		}
	}
	pp.Gaps = append(pp.Gaps, Gap{From: base, To: end, Reason: "its manifest did not decode or verify"})
	sort.Slice(pp.Gaps, func(i, j int) bool { return pp.Gaps[i].From < pp.Gaps[j].From })
}

// applyGapMarker adds a marker's lost range to pp's gaps unless an archived
// segment of the chain covers it, and, for a partition with no archived
// segment, moves its known log end to the marker's end.
func applyGapMarker(pp *PartitionPlan, gm *archive.GapMarker) {
	if len(pp.Segments) > 0 && gm.TopicID != pp.TopicID {
		return // another incarnation
	}
	for _, s := range pp.Segments {
		if s.Manifest.BaseOffset < max(gm.NextBase, gm.BaseOffset+1) && gm.BaseOffset < s.Manifest.NextSegmentBase {
			return // data over a marker: the segment was archived after all
		}
	}
	if len(pp.Segments) == 0 && gm.NextBase > pp.EmptyAt {
		pp.EmptyAt = gm.NextBase
	}
	why := fmt.Sprintf("lost on broker %d: %s", gm.BrokerID, gm.Reason)
	for i, g := range pp.Gaps {
		if g.From <= gm.BaseOffset && gm.NextBase <= g.To {
			if !strings.Contains(g.Reason, why) {
				pp.Gaps[i].Reason += "; " + why
			}
			return
		}
	}
	pp.Gaps = append(pp.Gaps, Gap{From: gm.BaseOffset, To: gm.NextBase, Reason: why})
	sort.Slice(pp.Gaps, func(i, j int) bool { return pp.Gaps[i].From < pp.Gaps[j].From })
}

// checkManifest validates every name and key a manifest carries before any
// of them is used: a hostile manifest must not steer writes or reads.
func checkManifest(layout archive.Layout, key string, m *archive.SegmentManifest) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("manifest %s: %s", key, fmt.Sprintf(format, a...))
	}
	if err := segment.ValidateTopic(m.Topic); err != nil {
		return bad("%v", err)
	}
	if m.Partition < 0 {
		return bad("negative partition %d", m.Partition)
	}
	if m.TopicID != archive.NoTopicID {
		if err := index.ValidateTopicID(m.TopicID); err != nil {
			return bad("%v", err)
		}
	}
	if m.BaseOffset < 0 || m.Summary == nil {
		return bad("bad base offset %d or no summary", m.BaseOffset)
	}
	dir := strings.TrimSuffix(key, archive.ManifestName)
	partPrefix := layout.PartitionPrefix(m.ClusterID, m.Topic, m.Partition)
	if m.Version == archive.ManifestVersionV2 {
		partPrefix = layout.PartitionPrefixV2(m.ClusterID, m.Topic, m.Partition)
	}
	if !strings.HasPrefix(dir, partPrefix) {
		return bad("names topic %s partition %d but is stored elsewhere", m.Topic, m.Partition)
	}
	if m.Version == archive.ManifestVersionV2 {
		if k, ok := archive.ParseKey(layout, key); !ok || k.VersionID != m.UploadID || k.Broker != m.BrokerID || k.BaseOffset != m.BaseOffset {
			return bad("names broker %d, base offset %d and upload id %s, not those of its key", m.BrokerID, m.BaseOffset, m.UploadID)
		}
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
			if m.Kind == archive.KindKRaftSnapshot {
				want = segment.FileName{BaseOffset: m.BaseOffset, Epoch: m.SnapshotEpoch, Kind: segment.KindCheckpoint}.String()
			}
			if f.Name != want {
				return bad("first file %q is not %q", f.Name, want)
			}
		} else if n.Kind != segment.KindSnapshot && n.BaseOffset != m.BaseOffset {
			return bad("file %q does not belong to segment %d", f.Name, m.BaseOffset)
		}
		if f.IsV2() {
			if f.Size < 0 || !strings.HasPrefix(f.DataKey, dir) || strings.Contains(strings.TrimPrefix(f.DataKey, dir), "/") {
				return bad("file %q: bad size or data key %q outside the segment's prefix", f.Name, f.DataKey)
			}
			for _, c := range f.Chunks {
				if k, ok := archive.ParseKey(layout, c.Key); c.Key != "" && (!ok || k.Kind != archive.KeyTailPack || k.Cluster != m.ClusterID) {
					return bad("file %q: chunk at raw offset %d is in object %q, neither its data object nor a tail pack of cluster %s", f.Name, c.Offset, c.Key, m.ClusterID)
				}
			}
			continue
		}
		if f.Size < 0 || f.Object.Size < 0 || !strings.HasPrefix(f.Object.Key, dir) {
			return bad("file %q: bad size or object key %q outside the segment's prefix", f.Name, f.Object.Key)
		}
	}
	return nil
}

// planPartition picks the incarnation, the versions and the chain.
func planPartition(topic string, p int32, segs []Segment, broker int32) *PartitionPlan {
	pp := &PartitionPlan{Topic: topic, Partition: p, FirstOffset: -1, LastOffset: -1, EmptyAt: -1}
	// Incarnation: the topic id with the newest manifest.
	newest := map[string]time.Time{}
	for _, s := range segs {
		if t := s.Manifest.Time(); t.After(newest[s.Manifest.TopicID]) {
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
		if m.Kind == archive.KindKRaftSnapshot {
			snaps = append(snaps, s)
			continue
		}
		if byBroker[m.BrokerID] == nil {
			byBroker[m.BrokerID] = map[int64]Segment{}
		}
		if old, ok := byBroker[m.BrokerID][m.BaseOffset]; !ok || m.Time().After(old.Manifest.Time()) {
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
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Manifest.Time().After(snaps[j].Manifest.Time()) })
	seenSnap := map[[2]int64]bool{}
	for _, s := range snaps {
		k := [2]int64{s.Manifest.BaseOffset, int64(s.Manifest.SnapshotEpoch)}
		if !seenSnap[k] && (broker < 0 || s.Manifest.BrokerID == primary) {
			seenSnap[k] = true
			pp.Snapshots = append(pp.Snapshots, s)
			for _, f := range s.Manifest.Files {
				pp.Bytes += f.Size
			}
			if !used[s.Manifest.BrokerID] { // a snapshot's broker is one whose copies are used
				used[s.Manifest.BrokerID] = true
				pp.Brokers = append(pp.Brokers, s.Manifest.BrokerID)
				sort.Slice(pp.Brokers, func(i, j int) bool { return pp.Brokers[i] < pp.Brokers[j] })
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
			if tm != sm && tm.Time().After(sm.Time()) && tm.BaseOffset <= sm.BaseOffset && sm.BaseOffset < tm.NextSegmentBase {
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
		// ...or extend the chain past its end: with one archived copy per
		// partition (archive-replicas=designated) the selected broker's own
		// copies may stop where another replica took over.
		if i+1 == len(chain) && ch <= lo {
			return true
		}
	}
	return len(chain) == 0 || hi <= chain[0].Manifest.BaseOffset
}

// latestLogDirs returns the newest capture of each of a broker's log dirs.
func latestLogDirs(ctx context.Context, src Source, cat *archive.Catalog, cluster string, broker int32) ([]*archive.LogDirManifest, error) {
	var out []*archive.LogDirManifest
	for _, e := range cat.LatestLogDirs(cluster, broker) {
		key := e.Object.Key
		data, err := src.Get(ctx, key, archive.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		m, err := archive.DecodeLogDirManifest(key, data)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LogDir < out[j].LogDir })
	return out, nil
}

// Clusters lists the cluster ids the archive holds (either layout version).
func Clusters(ctx context.Context, src Source, layout archive.Layout) ([]string, error) {
	cat, err := archive.ListAll(ctx, src, layout)
	if err != nil {
		return nil, err
	}
	out := cat.Clusters()
	if len(out) == 0 {
		return tailClusters(ctx, src, layout) // only tail captures (restore/tail.go)
	}
	return out, nil
}
