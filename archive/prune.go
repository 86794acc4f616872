package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/uploader"
)

// Prune (docs/OPERATIONS.md, "Prune"): delete exactly what no restore to a
// point within the retention window needs.
//
// Deletion is two-phase, like Thanos' deletion marks: prune first writes a
// deletion mark (DeletionMarkKey) naming the objects to delete in order,
// then deletes the commit object at once (a segment version's manifest, a
// tail manifest: the reverse of the commit, so no reader starts using the
// version again), and deletes the rest (the data) only once the mark is
// older than the delete delay, so a restore that read the manifest before
// it went can finish. Every step is idempotent: a prune that stops half way
// leaves marks the next prune finishes.

// Deletion-mark constants.
const (
	DeletionMarkFormat  = "segvault.deletion-mark"
	DeletionMarkVersion = 1
	// DeletionMarkDir is the key element of the marks, under the v2 root:
	// <prefix>v2/<cluster>/deletion-marks/<id>.json.
	DeletionMarkDir = "deletion-marks"
)

// Kinds of what prune deletes.
const (
	PruneSegmentVersion  = "segment-version"
	PruneSnapshotVersion = "snapshot-version"
	PruneGapMarker       = "gap-marker"
	PruneLogDirCapture   = "log-dir-capture"
	PruneTailCapture     = "tail-capture"
	PruneOrphan          = "orphan"
)

// DeletionMark records a decided deletion until it is complete.
type DeletionMark struct {
	Format   string    `json:"format"`
	Version  int       `json:"version"`
	MarkedAt time.Time `json:"marked_at"`
	Kind     string    `json:"kind"`
	Reason   string    `json:"reason"`
	// Commit, when set, is Keys[0]: deleted right after the mark is written.
	Commit string `json:"commit,omitempty"`
	// Keys are deleted in this order; the mark itself goes last.
	Keys  []string `json:"keys"`
	Bytes int64    `json:"bytes"`
	// Guard (orphans): a manifest key whose appearance cancels the deletion
	// (the upload was committed after all).
	Guard string `json:"guard,omitempty"`
}

// DecodeDeletionMark parses and checks a deletion mark read from key.
func DecodeDeletionMark(key string, data []byte) (*DeletionMark, error) {
	var m DeletionMark
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("deletion mark %s: %w", key, err)
	}
	if m.Format != DeletionMarkFormat || m.Version != DeletionMarkVersion {
		return nil, fmt.Errorf("deletion mark %s: not a %s version %d object (format %q, version %d)", key, DeletionMarkFormat, DeletionMarkVersion, m.Format, m.Version)
	}
	if len(m.Keys) == 0 || m.Commit != "" && m.Commit != m.Keys[0] {
		return nil, fmt.Errorf("deletion mark %s: no keys, or commit %q is not the first key", key, m.Commit)
	}
	return &m, nil
}

// DeletionMarkKey is where the mark of a deletion whose first key is first
// lives (one mark per first key, so a re-run finds it).
func (l Layout) DeletionMarkKey(cluster, first string) string {
	h := sha256.Sum256([]byte(first))
	return fmt.Sprintf("%s%s/%s/%s.json", l.RootV2(), cluster, DeletionMarkDir, hex.EncodeToString(h[:8]))
}

// PruneOptions configure a prune.
type PruneOptions struct {
	// KeepWithin is the retention window: every restore to a point within
	// [now-KeepWithin, now] keeps working.
	KeepWithin time.Duration
	// OrphanGrace is how old an uncommitted data object must be to be an
	// orphan, not an upload in flight (default 24h; negative: none).
	OrphanGrace time.Duration
	// DeleteDelay is how long data stays after its manifest went (default
	// 1h; negative: none).
	DeleteDelay time.Duration
	Now         time.Time // zero: time.Now()
	DryRun      bool
	Concurrency int
}

// DefaultOrphanGrace and DefaultDeleteDelay are PruneOptions' defaults.
const (
	DefaultOrphanGrace = 24 * time.Hour
	DefaultDeleteDelay = time.Hour
)

func (o PruneOptions) withDefaults() PruneOptions {
	if o.OrphanGrace == 0 {
		o.OrphanGrace = DefaultOrphanGrace
	}
	if o.DeleteDelay == 0 {
		o.DeleteDelay = DefaultDeleteDelay
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	return o
}

// PruneUnit is one decided deletion.
type PruneUnit struct {
	Cluster string   `json:"cluster"`
	Kind    string   `json:"kind"`
	Reason  string   `json:"reason"`
	Commit  string   `json:"commit,omitempty"`
	Keys    []string `json:"keys"`
	Bytes   int64    `json:"bytes"`
	Guard   string   `json:"guard,omitempty"`
}

// PrunePlan is what PlanPrune decided.
type PrunePlan struct {
	WindowStart time.Time   `json:"window_start"`
	Units       []PruneUnit `json:"units"`
	// Kept counts what stays, by kind.
	KeptVersions int `json:"kept_versions"`
	// Undecodable objects are never pruned; they are listed here.
	Undecodable []string `json:"undecodable,omitempty"`
}

// versionGroup is one broker's versions of one partition incarnation.
type groupKey struct {
	cluster, topic, topicID, kind string
	partition                     int32
	broker                        int32
}

type partKey struct {
	cluster, topic, topicID string
	partition               int32
}

// liveAt returns the indices (into vs) of the versions a restore of the
// archive as it was at t uses: of the versions archived by t
// (CaptureTime), per base offset (and snapshot epoch) the newest, less any
// a newer one covers (a cleaner that merged several segments into one),
// newest in restore's own order (SegmentManifest.Time; restore/plan.go
// planPartition, dropSuperseded).
func liveAt(vs []*PruneVersion, t time.Time, snapshots bool) []int {
	live, _ := liveAtN(vs, t, snapshots)
	return live
}

// liveAtN is liveAt, and how many versions were the newest of their base
// (live or covered).
func liveAtN(vs []*PruneVersion, t time.Time, snapshots bool) ([]int, int) {
	newest := map[[2]int64]int{}
	for i, v := range vs {
		if v.CaptureTime().After(t) {
			continue
		}
		k := [2]int64{v.M.BaseOffset, 0}
		if snapshots {
			k[1] = int64(v.M.SnapshotEpoch)
		}
		if old, ok := newest[k]; !ok || v.M.Time().After(vs[old].M.Time()) {
			newest[k] = i
		}
	}
	idx := make([]int, 0, len(newest))
	for _, i := range newest {
		idx = append(idx, i)
	}
	if snapshots {
		return sortedInts(idx), len(idx)
	}
	// By base: a version can only be covered by one of lower base whose
	// range reaches past its base; the running maximum of the ranges' ends
	// rules most out at once (a chain that does not overlap is linear).
	sort.Slice(idx, func(a, b int) bool { return vs[idx[a]].M.BaseOffset < vs[idx[b]].M.BaseOffset })
	var out []int
	reach := int64(-1) // max NextSegmentBase of idx[:k]
	for k, i := range idx {
		covered := false
		if reach > vs[i].M.BaseOffset {
			for _, j := range idx[:k] {
				if covers(vs[j], vs[i]) {
					covered = true
					break
				}
			}
		}
		if !covered {
			out = append(out, i)
		}
		reach = max(reach, vs[i].M.NextSegmentBase)
	}
	return sortedInts(out), len(idx)
}

func sortedInts(s []int) []int {
	sort.Ints(s)
	return s
}

// covers reports whether t is newer than s (in restore's order,
// SegmentManifest.Time) and its range holds s's base.
func covers(t, s *PruneVersion) bool {
	return t.M.Time().After(s.M.Time()) && t.M.BaseOffset <= s.M.BaseOffset && s.M.BaseOffset < t.M.NextSegmentBase
}

// PlanPrune decides what to delete. It is pure: the inventory and the
// options in, the plan out.
func PlanPrune(inv *PruneInventory, layout Layout, opts PruneOptions) *PrunePlan {
	opts = opts.withDefaults()
	now := opts.Now
	ws := now.Add(-opts.KeepWithin)
	plan := &PrunePlan{WindowStart: ws}
	marked := map[string]bool{}
	for _, m := range inv.Marks {
		if m.Mark != nil {
			for _, k := range m.Mark.Keys {
				marked[k] = true
			}
		}
	}
	// Segment and snapshot versions.
	groups := map[groupKey][]*PruneVersion{}
	var groupOrder []groupKey
	var kept []*PruneVersion
	for i := range inv.Versions {
		v := &inv.Versions[i]
		if marked[v.Manifest.Key] {
			continue
		}
		if v.M == nil {
			plan.Undecodable = append(plan.Undecodable, v.Manifest.Key)
			kept = append(kept, v)
			continue
		}
		k := groupKey{cluster: v.Cluster, topic: v.M.Topic, topicID: v.M.TopicID, kind: v.M.Kind, partition: v.M.Partition, broker: v.M.BrokerID}
		if groups[k] == nil {
			groupOrder = append(groupOrder, k)
		}
		groups[k] = append(groups[k], v)
	}
	// The moments a restore in the window may ask for that matter: the
	// window's start, now, and every capture in between.
	partEvents := map[partKey]map[time.Time]bool{}
	groupsByPart := map[partKey][]groupKey{}
	for _, k := range groupOrder {
		pk := partKey{k.cluster, k.topic, k.topicID, k.partition}
		groupsByPart[pk] = append(groupsByPart[pk], k)
		if partEvents[pk] == nil {
			partEvents[pk] = map[time.Time]bool{ws: true, now: true}
		}
		for _, v := range groups[k] {
			if t := v.CaptureTime(); t.After(ws) && !t.After(now) {
				partEvents[pk][t] = true
			}
		}
	}
	var deleted []*PruneVersion
	liveAtStart := map[partKey][]*PruneVersion{} // segment versions live at the window's start
	for _, k := range groupOrder {
		vs := groups[k]
		pk := partKey{k.cluster, k.topic, k.topicID, k.partition}
		snap := k.kind == KindKRaftSnapshot
		need := make([]bool, len(vs))
		for i, v := range vs {
			need[i] = v.CaptureTime().After(ws) // archived within the window
		}
		live, newest := liveAtN(vs, ws, snap)
		for _, i := range live {
			need[i] = true
			if !snap {
				liveAtStart[pk] = append(liveAtStart[pk], vs[i])
			}
		}
		// An older version is live later in the window only if it was the
		// newest of its base at the start (newer ones only add up) but
		// covered by a merge that a later rewrite with a shorter range
		// replaces: only then are the later moments looked at.
		if len(live) < newest {
			for t := range partEvents[pk] {
				for _, i := range liveAt(vs, t, snap) {
					need[i] = true
				}
			}
		}
		// A version that covers a kept one stays too, so the kept ones'
		// supersession (what restore picks) is unchanged.
		if !snap {
			byBase := make([]int, len(vs)) // vs indices by base offset
			for i := range byBase {
				byBase[i] = i
			}
			sort.Slice(byBase, func(a, b int) bool { return vs[byBase[a]].M.BaseOffset < vs[byBase[b]].M.BaseOffset })
			for changed := true; changed; {
				changed = false
				for _, i := range byBase {
					if need[i] {
						continue
					}
					// the versions i covers have their base in [base, next)
					lo := sort.Search(len(byBase), func(k int) bool { return vs[byBase[k]].M.BaseOffset >= vs[i].M.BaseOffset })
					for k := lo; k < len(byBase) && vs[byBase[k]].M.BaseOffset < max(vs[i].M.NextSegmentBase, vs[i].M.BaseOffset+1); k++ {
						if j := byBase[k]; need[j] && j != i && covers(vs[i], vs[j]) {
							need[i], changed = true, true
							break
						}
					}
				}
			}
		}
		for i, v := range vs {
			if need[i] {
				kept = append(kept, v)
			} else {
				deleted = append(deleted, v)
			}
		}
	}
	plan.KeptVersions = len(kept)
	// Every key a kept manifest names is never deleted.
	referenced := map[string]bool{}
	for _, v := range kept {
		if v.M == nil {
			for _, d := range v.Data {
				referenced[d.Key] = true
			}
			continue
		}
		for _, f := range v.M.Files {
			referenced[f.Object.Key], referenced[f.DataKey] = true, true
			for _, c := range f.Chunks {
				referenced[c.Key] = true
			}
		}
	}
	// Tails: kept unless every capture is of a segment archived by the
	// window's start and the manifest is older than the window.
	rolledEnd := func(pk partKey) int64 {
		end := int64(-1)
		for _, v := range liveAtStart[pk] {
			end = max(end, v.M.NextSegmentBase)
		}
		return end
	}
	// A capture is replaced only when the versions live at the window's
	// start (any replica's: restore splices another replica's captures
	// past their end, restore/tail.go spliceOverlap) cover its whole
	// chain, from the segment's base to the end of the chain's furthest
	// capture: restore rebuilds the segment from the chain's first bytes.
	type chainKey struct {
		cluster, topic, topicID string
		partition               int32
		broker                  int32
		base                    int64
	}
	chainEnd := map[chainKey]int64{}
	for _, tl := range inv.Tails {
		if tl.T == nil {
			continue
		}
		for _, c := range tl.T.Captures {
			k := chainKey{tl.Cluster, c.Topic, c.TopicID, c.Partition, tl.T.BrokerID, c.SegmentBase}
			chainEnd[k] = max(chainEnd[k], c.SegmentBase+1, c.LastOffset+1)
		}
	}
	replaced := func(cluster string, broker int32, c TailCapture) bool {
		pk := partKey{cluster, c.Topic, c.TopicID, c.Partition}
		end := chainEnd[chainKey{cluster, c.Topic, c.TopicID, c.Partition, broker, c.SegmentBase}]
		return c.SegmentBase < rolledEnd(pk) && rangeCovered(liveAtStart[pk], c.SegmentBase, end)
	}
	// A manifest that does not decode may name chunks in tail packs: then
	// no pack goes.
	keepPacks := len(plan.Undecodable) > 0
	var tailUnits []PruneUnit
	for _, tl := range inv.Tails {
		if marked[tl.Object.Key] {
			continue
		}
		t := tl.T
		deletable := t != nil
		if t != nil {
			at := t.CapturedAt
			if at.IsZero() {
				at = tl.Object.ModTime
			}
			deletable = at.Before(ws)
			for _, c := range t.Captures {
				if !deletable {
					break
				}
				deletable = replaced(tl.Cluster, t.BrokerID, c)
			}
		} else {
			plan.Undecodable = append(plan.Undecodable, tl.Object.Key)
		}
		if !deletable {
			if t != nil {
				referenced[t.PackKey] = true
				for _, c := range t.Captures {
					for _, ch := range c.Chunks {
						referenced[ch.Key] = true
					}
				}
			} else {
				referenced[strings.TrimSuffix(tl.Object.Key, ".json")+".pack"] = true
			}
			continue
		}
		u := PruneUnit{Cluster: tl.Cluster, Kind: PruneTailCapture, Commit: tl.Object.Key, Keys: []string{tl.Object.Key},
			Reason: fmt.Sprintf("tail capture of %s, older than the window; every captured segment was archived by its start", t.CapturedAt.UTC().Format(time.RFC3339))}
		tailUnits = append(tailUnits, u)
	}
	for _, u := range tailUnits {
		pack := strings.TrimSuffix(u.Keys[0], ".json") + ".pack"
		if _, ok := inv.Sizes[pack]; ok && !referenced[pack] && !keepPacks {
			u.Keys = append(u.Keys, pack)
		}
		plan.add(inv, u)
	}
	// Superseded versions: the manifest first, then the objects in its dir.
	for _, v := range deleted {
		kind := PruneSegmentVersion
		if v.M.Kind == KindKRaftSnapshot {
			kind = PruneSnapshotVersion
		}
		u := PruneUnit{Cluster: v.Cluster, Kind: kind, Commit: v.Manifest.Key, Keys: []string{v.Manifest.Key},
			Reason: fmt.Sprintf("%s-%d base %d of broker %d, archived %s: superseded before the window starts", v.M.Topic, v.M.Partition, v.M.BaseOffset, v.M.BrokerID, v.CaptureTime().UTC().Format(time.RFC3339))}
		for _, d := range v.Data {
			if !referenced[d.Key] {
				u.Keys = append(u.Keys, d.Key)
			}
		}
		plan.add(inv, u)
	}
	// Gap markers: gone once, at every moment of the window, archived
	// segments cover the whole marked range.
	for _, g := range inv.Gaps {
		if marked[g.Object.Key] {
			continue
		}
		if g.G == nil {
			plan.Undecodable = append(plan.Undecodable, g.Object.Key)
			continue
		}
		if !g.G.At.Before(ws) {
			continue
		}
		pk := partKey{g.Cluster, g.G.Topic, g.G.TopicID, g.G.Partition}
		needed := len(groupsByPart[pk]) == 0
		for t := range partEvents[pk] {
			if needed {
				break
			}
			var live []*PruneVersion // every broker's, at t
			for _, k := range groupsByPart[pk] {
				if k.kind == KindSegment {
					for _, i := range liveAt(groups[k], t, false) {
						live = append(live, groups[k][i])
					}
				}
			}
			needed = !rangeCovered(live, g.G.BaseOffset, max(g.G.NextBase, g.G.BaseOffset+1))
		}
		if needed {
			continue
		}
		plan.add(inv, PruneUnit{Cluster: g.Cluster, Kind: PruneGapMarker, Commit: g.Object.Key, Keys: []string{g.Object.Key},
			Reason: fmt.Sprintf("%s-%d offsets %d..%d: archived segments cover the marked range throughout the window", g.G.Topic, g.G.Partition, g.G.BaseOffset, g.G.NextBase)})
	}
	// Log-dir captures: per dir the newest, every one in the window and
	// the newest before it stay.
	type ldKey struct {
		root, cluster, dir string
		broker             int32
	}
	lds := map[ldKey][]PruneLogDir{}
	for _, ld := range inv.LogDirs {
		if marked[ld.Object.Key] {
			continue
		}
		k := ldKey{ld.Root, ld.Cluster, ld.Dir, ld.Broker}
		lds[k] = append(lds[k], ld)
	}
	var ldUnits []PruneUnit
	for _, caps := range lds {
		sort.Slice(caps, func(i, j int) bool {
			return caps[i].At.Before(caps[j].At) || caps[i].At.Equal(caps[j].At) && caps[i].Object.Key < caps[j].Object.Key
		})
		lastBefore := -1
		for i, c := range caps {
			if c.At.Before(ws) {
				lastBefore = i
			}
		}
		for i := 0; i < lastBefore && i < len(caps)-1; i++ {
			c := caps[i]
			ldUnits = append(ldUnits, PruneUnit{Cluster: c.Cluster, Kind: PruneLogDirCapture, Commit: c.Object.Key, Keys: []string{c.Object.Key},
				Reason: fmt.Sprintf("root-file capture of log dir %s of broker %d at %s: a newer capture precedes the window", c.Dir, c.Broker, c.At.UTC().Format(time.RFC3339))})
		}
	}
	sort.Slice(ldUnits, func(i, j int) bool { return ldUnits[i].Keys[0] < ldUnits[j].Keys[0] })
	for _, u := range ldUnits {
		plan.add(inv, u)
	}
	// Orphans: no manifest names them and they are older than the grace.
	orphan := func(cluster string, oi uploader.ObjectInfo, guard, why string) {
		if marked[oi.Key] || referenced[oi.Key] || !oi.ModTime.Before(now.Add(-max(opts.OrphanGrace, 0))) {
			return
		}
		plan.add(inv, PruneUnit{Cluster: cluster, Kind: PruneOrphan, Keys: []string{oi.Key}, Guard: guard,
			Reason: fmt.Sprintf("%s, written %s (older than the %s grace)", why, oi.ModTime.UTC().Format(time.RFC3339), opts.OrphanGrace)})
	}
	for _, o := range inv.Orphans {
		orphan(o.Cluster, o.Object, o.Guard, "uncommitted upload: its version dir holds no manifest")
	}
	for _, v := range kept {
		if v.M == nil {
			continue
		}
		for _, d := range v.Data {
			orphan(v.Cluster, d, "", "not named by the manifest of its version dir")
		}
	}
	tails := map[string]bool{}
	for _, tl := range inv.Tails {
		tails[tl.Object.Key] = true
	}
	for _, p := range inv.Packs {
		if !tails[p.Guard] && !keepPacks {
			orphan(p.Cluster, p.Object, p.Guard, "uncommitted tail pack: no tail manifest")
		}
	}
	sort.Strings(plan.Undecodable)
	return plan
}

func (p *PrunePlan) add(inv *PruneInventory, u PruneUnit) {
	for _, k := range u.Keys {
		u.Bytes += inv.Sizes[k]
	}
	p.Units = append(p.Units, u)
}

// rangeCovered reports whether the versions' ranges cover [from, to).
func rangeCovered(vs []*PruneVersion, from, to int64) bool {
	type r struct{ a, b int64 }
	var rs []r
	for _, v := range vs {
		rs = append(rs, r{v.M.BaseOffset, v.M.NextSegmentBase})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].a < rs[j].a })
	at := from
	for _, x := range rs {
		if x.a > at {
			break
		}
		at = max(at, x.b)
		if at >= to {
			return true
		}
	}
	return at >= to
}

// LockedUnit is a deletion not attempted: an object of it is locked.
type LockedUnit struct {
	Unit PruneUnit `json:"unit"`
	Key  string    `json:"locked_key"`
	// DeletableAt is when the last retention of the unit's objects ends
	// (zero with a legal hold: when it is released).
	DeletableAt time.Time `json:"deletable_at,omitzero"`
	LegalHold   bool      `json:"legal_hold,omitempty"`
}

// PendingMark is a mark whose data waits for the delete delay.
type PendingMark struct {
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`
	MarkedAt    time.Time `json:"marked_at"`
	DeletableAt time.Time `json:"deletable_at"`
	Objects     int       `json:"objects"`
	Bytes       int64     `json:"bytes"`
}

// PruneReport is what a prune did (or, dry, would do).
type PruneReport struct {
	DryRun       bool          `json:"dry_run"`
	WindowStart  time.Time     `json:"window_start"`
	Units        []PruneUnit   `json:"units"` // newly decided this run
	Deleted      []string      `json:"deleted"`
	BytesFreed   int64         `json:"bytes_freed"`
	Pending      []PendingMark `json:"pending,omitempty"`
	Cancelled    []string      `json:"cancelled,omitempty"` // orphan marks whose upload got committed
	Locked       []LockedUnit  `json:"locked,omitempty"`
	Undecodable  []string      `json:"undecodable,omitempty"`
	Failures     []string      `json:"failures,omitempty"`
	KeptVersions int           `json:"kept_versions"`
	Duration     Seconds       `json:"duration_seconds"`
}

// Prune lists the archive, plans and executes (docs/OPERATIONS.md,
// "Prune"): marks first, then commits, then (after the delay) data.
func Prune(ctx context.Context, b uploader.Bucket, layout Layout, cluster string, opts PruneOptions) (*PruneReport, error) {
	opts = opts.withDefaults()
	start := time.Now()
	inv, err := ListPruneInventory(ctx, b, layout, cluster, opts.Concurrency)
	if err != nil {
		return nil, err
	}
	rep, err := ExecutePrune(ctx, b, layout, inv, opts)
	if rep != nil {
		rep.Duration = Seconds(time.Since(start))
	}
	return rep, err
}

// ExecutePrune finishes the marks in inv, then plans and executes new
// deletions. The report is returned also with an error (a context
// cancelled half way): what was done is in it.
func ExecutePrune(ctx context.Context, b uploader.Bucket, layout Layout, inv *PruneInventory, opts PruneOptions) (*PruneReport, error) {
	opts = opts.withDefaults()
	now := opts.Now
	plan := PlanPrune(inv, layout, opts)
	rep := &PruneReport{DryRun: opts.DryRun, WindowStart: plan.WindowStart, Undecodable: plan.Undecodable, KeptVersions: plan.KeptVersions}
	var mu sync.Mutex
	deleted := func(key string) {
		mu.Lock()
		defer mu.Unlock()
		rep.Deleted = append(rep.Deleted, key)
		rep.BytesFreed += inv.Sizes[key]
	}
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		rep.Failures = append(rep.Failures, fmt.Sprintf(format, a...))
	}
	del := func(ctx context.Context, key string) bool {
		if opts.DryRun {
			if _, ok := inv.Sizes[key]; ok {
				deleted(key)
			}
			return true
		}
		if err := b.Delete(ctx, key); err != nil {
			if ctx.Err() == nil {
				fail("delete %s: %v", key, err)
			}
			return false
		}
		if _, ok := inv.Sizes[key]; ok {
			deleted(key)
		}
		return true
	}
	lockOn, err := uploader.ObjectLockEnabled(ctx, b)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	// finish completes one mark: commit, then (after the delay) the data,
	// then the mark.
	finish := func(ctx context.Context, markKey string, m *DeletionMark) error {
		if m.Guard != "" && !opts.DryRun {
			if _, err := b.Stat(ctx, m.Guard); err == nil {
				if del(ctx, markKey) {
					mu.Lock()
					rep.Cancelled = append(rep.Cancelled, markKey)
					mu.Unlock()
				}
				return ctx.Err()
			} else if !errors.Is(err, uploader.ErrNotFound) {
				fail("stat %s (guard of deletion mark %s): %v", m.Guard, markKey, err)
				return ctx.Err()
			}
		}
		rest := m.Keys
		if m.Commit != "" {
			if !del(ctx, m.Commit) {
				return ctx.Err()
			}
			rest = m.Keys[1:]
		}
		if due := m.MarkedAt.Add(max(opts.DeleteDelay, 0)); now.Before(due) && len(rest) > 0 {
			var n int64
			for _, k := range rest {
				n += inv.Sizes[k]
			}
			mu.Lock()
			rep.Pending = append(rep.Pending, PendingMark{Key: markKey, Kind: m.Kind, MarkedAt: m.MarkedAt, DeletableAt: due, Objects: len(rest), Bytes: n})
			mu.Unlock()
			return ctx.Err()
		}
		for _, k := range rest {
			if !del(ctx, k) {
				return ctx.Err()
			}
		}
		if lockOn && !opts.DryRun {
			// A bucket's default retention locks the marks too: such a
			// mark stays (harmless: everything it names is gone) until then.
			r, err := uploader.ObjectRetention(ctx, b, markKey)
			if err == nil && r.LockedAt(now) {
				mu.Lock()
				rep.Locked = append(rep.Locked, LockedUnit{Unit: PruneUnit{Kind: "deletion-mark", Keys: []string{markKey}}, Key: markKey, DeletableAt: r.RetainUntil, LegalHold: r.LegalHold})
				mu.Unlock()
				return ctx.Err()
			}
		}
		del(ctx, markKey)
		return ctx.Err()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for _, e := range inv.Marks {
		if e.Mark == nil {
			fail("deletion mark %s: %s (left alone)", e.Object.Key, e.Err)
			continue
		}
		g.Go(func() error { return finish(gctx, e.Object.Key, e.Mark) })
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for _, u := range plan.Units {
		g.Go(func() error {
			if lockOn {
				lu, err := checkLocks(gctx, b, u, now)
				if err != nil {
					fail("%v", err)
					return gctx.Err()
				}
				if lu != nil {
					mu.Lock()
					rep.Locked = append(rep.Locked, *lu)
					mu.Unlock()
					return nil
				}
			}
			mu.Lock()
			rep.Units = append(rep.Units, u)
			mu.Unlock()
			m := &DeletionMark{Format: DeletionMarkFormat, Version: DeletionMarkVersion, MarkedAt: now.UTC(), Kind: u.Kind, Reason: u.Reason,
				Commit: u.Commit, Keys: u.Keys, Bytes: u.Bytes, Guard: u.Guard}
			markKey := layout.DeletionMarkKey(u.Cluster, u.Keys[0])
			if !opts.DryRun {
				data, err := json.MarshalIndent(m, "", "  ")
				if err != nil {
					return err
				}
				data = append(data, '\n')
				if err := b.Create(gctx, markKey, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{ContentType: "application/json"}); err != nil {
					if errors.Is(err, uploader.ErrExists) {
						return nil // another prune marked it meanwhile: it finishes it
					}
					if gctx.Err() == nil {
						fail("write deletion mark %s for %s: %v", markKey, u.Keys[0], err)
					}
					return gctx.Err()
				}
			}
			return finish(gctx, markKey, m)
		})
	}
	err = g.Wait()
	sort.Strings(rep.Deleted)
	sort.Slice(rep.Units, func(i, j int) bool { return rep.Units[i].Keys[0] < rep.Units[j].Keys[0] })
	sort.Slice(rep.Pending, func(i, j int) bool { return rep.Pending[i].Key < rep.Pending[j].Key })
	sort.Slice(rep.Locked, func(i, j int) bool { return rep.Locked[i].Key < rep.Locked[j].Key })
	sort.Strings(rep.Failures)
	return rep, err
}

// checkLocks returns a LockedUnit when any object of u is locked at now.
func checkLocks(ctx context.Context, b uploader.Bucket, u PruneUnit, now time.Time) (*LockedUnit, error) {
	var lu *LockedUnit
	for _, k := range u.Keys {
		r, err := uploader.ObjectRetention(ctx, b, k)
		if errors.Is(err, uploader.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("object lock of %s: %w", k, err)
		}
		if !r.LockedAt(now) {
			continue
		}
		if lu == nil {
			lu = &LockedUnit{Unit: u, Key: k}
		}
		if r.LegalHold {
			lu.LegalHold = true
		}
		if r.RetainUntil.After(lu.DeletableAt) {
			lu.DeletableAt = r.RetainUntil
		}
	}
	return lu, nil
}
