package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/uploader"
)

// ownership is the agent's state for archive-replicas=designated: the
// metadata image, the claims, and per standby partition what the archive
// covers. The agent's only hook is replicaFilter, called once per
// partition per pass.
type ownership struct {
	mu       sync.Mutex
	started  time.Time
	md       *index.ClusterMetadata
	mdSig    string // identity of the metadata files the image was built from
	mdDir    string
	mdErr    error
	mdLogged bool
	mdAt     time.Time       // when the image was last rebuilt
	claims   *archive.Claims // nil: the store has no conditional writes
	claimErr error
	parts    map[string]*standbyPart
	roles    map[string]string // partition dir -> role this pass (owner_diverge.go)
	compared int64             // bytes read for divergence checks this pass
	tookOver map[string]bool   // partition dirs a standby took segments of over (tail capture follows)
	// load builds the metadata image (tests replace it).
	load func(dir string) (*index.ClusterMetadata, error)
}

// standbyPart is what a standby replica knows of one partition's archive.
type standbyPart struct {
	manifests  map[string]*OffsetRange // manifest key -> its range (nil: not a usable manifest)
	covered    int64                   // offsets other brokers' manifests covered at the last listing
	progress   time.Time               // when that coverage last grew (or watching began)
	taken      map[int64]bool          // bases taken over (logged once)
	logs       map[string]*archivedLog // manifest key -> its .log's record (for divergence checks)
	checked    map[int64]bool          // local bases compared with the archive (or found not comparable)
	diverged   map[int64]Divergence    // local bases that differ from the archived copy
	reported   map[int64]bool          // diverged bases whose divergence report is in the bucket
	listed     time.Time               // last listing (refresh)
	broker     map[string]int32        // manifest key -> the broker that archived it
	claimOwner int32                   // the claim's owner last seen (-1: none yet)
	// takingOver: this standby took the partition over and the archive
	// does not cover its rolled data yet (Takeover's InTakeover).
	takingOver bool
}

func (a *Agent) ownerState() *ownership {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owner == nil {
		a.owner = &ownership{started: time.Now(), parts: map[string]*standbyPart{}, load: func(dir string) (*index.ClusterMetadata, error) {
			md, _, err := index.LoadClusterMetadata(dir)
			return md, err
		}}
	}
	return a.owner
}

// replicaFilter decides which of a partition's candidates this agent
// archives under archive-replicas=designated. nil means all of them (mode
// all, designated archiver, claim owner, or anything uncertain: archiving
// a duplicate is safe, missing data is not).
func (a *Agent) replicaFilter(ctx context.Context, ps partitionScan, id BrokerIdentity, now time.Time) func(*candidate) bool {
	cfg := a.snap()
	o := a.ownerState()
	gauge := roleOwner
	defer func() { o.setRole(ps.Path, gauge); o.noteTakeover(ps.Path, gauge) }()
	// A salvage run (include-active: a stopped broker's disk) archives all
	// it finds: nobody else may hold that data any more.
	if cfg.ArchiveReplicas != ArchiveReplicasDesignated || cfg.IncludeActive || ps.Dir.Topic == "__cluster_metadata" {
		return nil
	}
	md := o.metadata(a, now)
	role, who := MetadataRole(md, id.BrokerID, ps.Dir.Topic, ps.Dir.Partition)
	byClaim := false // the owner is a claim's (no metadata settles it)
	log := a.log.With("topic", ps.Dir.Topic, "partition", ps.Dir.Partition)
	if role == RoleUndecided {
		if md != nil {
			return nil // KRaft metadata without an answer (no live replica): archive
		}
		cl := o.claimsFor(a, id)
		if cl == nil {
			return nil
		}
		st, err := cl.Tick(ctx, ps.Dir.Topic, ps.Dir.Partition)
		if err != nil {
			log.Warn("partition claim failed; archiving this replica meanwhile", "err", err)
			return nil
		}
		if st.TookOver {
			log.Info("took over the partition claim of a broker that stopped renewing it", "broker", st.Owner)
		}
		if st.Owner < 0 {
			return nil
		}
		if st.Mine {
			return o.skipCovered(ctx, a, ps, id, now, log)
		}
		who, byClaim = st.Owner, true
		if sp := o.part(ps.Path); sp.claimOwner != st.Owner {
			// Another broker took the claim (or it is first seen): it
			// archives from now on; the grace counts from here.
			sp.claimOwner, sp.progress = st.Owner, now
		}
	} else if role == RoleArchive {
		return o.skipCovered(ctx, a, ps, id, now, log)
	}
	grace := cfg.TakeoverGrace
	if grace == 0 {
		grace = TakeoverGrace(cfg.SettleTime, cfg.ScanInterval)
	}
	if role == RoleStandby {
		grace = StandbyMetadataGrace(md, id.BrokerID, who, ps.Dir.Topic, ps.Dir.Partition, grace)
	}
	if byClaim {
		// A dead owner's claim is taken over after claim-ttl, and then
		// one broker archives: every standby archiving sooner, from the
		// archive's coverage alone, would make a copy each (seen with
		// three ZooKeeper-era brokers: 1.93x one replica's bytes).
		grace = max(grace, ClaimStandbyGrace(cfg.ClaimTTL, cfg.ScanInterval))
	}
	take, err := o.takeover(ctx, a, ps, id, now, grace)
	if err != nil {
		log.Warn("cannot tell what the archive holds for this standby partition; archiving this replica meanwhile", "err", err)
		return nil
	}
	gauge = roleStandby
	if len(take) > 0 {
		gauge = roleTakeover
	}
	o.compare(ctx, a, ps, id, take, now, log)
	for base := range take {
		if sp := o.part(ps.Path); !sp.taken[base] {
			sp.taken[base] = true
			log.Info("taking over: the archive lacks this rolled segment's offsets beyond the grace period", "base_offset", base, "designated", who, "grace", grace)
		}
	}
	return func(c *candidate) bool { return c.Kind != archive.KindSegment || take[c.Base] }
}

// metadata returns the KRaft metadata image, rebuilt when its files
// changed; nil when there is no metadata log (ZooKeeper era) or it cannot
// be read (logged once).
func (o *ownership) metadata(a *Agent, now time.Time) *index.ClusterMetadata {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mdDir == "" {
		o.mdDir = findMetadataDir(a.cfg.MetadataLogDir, a.cfg.LogDirs)
		if o.mdDir == "" {
			return nil
		}
	}
	// The metadata log grows all the time (NoOp records every 500 ms): the
	// image is rebuilt at most every two scans (reading and decoding runs at
	// about 80 MB/s; a designation that lags is covered by takeover).
	if o.md != nil && now.Sub(o.mdAt) < 2*a.snap().ScanInterval {
		return o.md
	}
	sig, err := dirSignature(o.mdDir)
	if err == nil && sig == o.mdSig {
		return o.md
	}
	var md *index.ClusterMetadata
	if err == nil {
		md, err = o.load(o.mdDir)
	}
	if err != nil {
		if !o.mdLogged {
			a.log.Warn("cannot read the KRaft metadata log; partitions fall back to claims or archiving every replica", "file", o.mdDir, "err", err)
			o.mdLogged = true
		}
		o.mdErr = err
		return o.md // keep the last good image
	}
	o.md, o.mdSig, o.mdErr, o.mdLogged, o.mdAt = md, sig, nil, false, now
	return md
}

func findMetadataDir(configured string, logDirs []string) string {
	if configured != "" {
		return filepath.Join(configured, index.MetadataDirName)
	}
	for _, d := range logDirs {
		p := filepath.Join(d, index.MetadataDirName)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
	}
	return ""
}

// dirSignature names the metadata files' versions (name, size, mtime).
func dirSignature(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".log") && !strings.HasSuffix(e.Name(), ".checkpoint") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s/%d/%d;", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (o *ownership) claimsFor(a *Agent, id BrokerIdentity) *archive.Claims {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.claims != nil || o.claimErr != nil {
		return o.claims
	}
	ba, ok := a.store.(*bucketArchive)
	var cw uploader.ConditionalWriter
	if ok {
		cw, ok = uploader.AsConditional(ba.b)
	}
	if !ok {
		o.claimErr = fmt.Errorf("the store has no conditional writes")
		a.log.Warn("no partition claims possible (the store has no conditional writes): every replica archives partitions the metadata does not settle")
		return nil
	}
	o.claims, o.claimErr = archive.NewClaims(ba.b, cw, a.layout, id.ClusterID, id.BrokerID, a.snap().ClaimTTL, nil)
	if o.claimErr != nil {
		a.log.Warn("no partition claims possible", "err", o.claimErr)
	}
	return o.claims
}

func (o *ownership) part(path string) *standbyPart {
	o.mu.Lock()
	defer o.mu.Unlock()
	sp := o.parts[path]
	if sp == nil {
		sp = &standbyPart{manifests: map[string]*OffsetRange{}, progress: o.started, taken: map[int64]bool{}, claimOwner: -1,
			logs: map[string]*archivedLog{}, broker: map[string]int32{}, checked: map[int64]bool{}, diverged: map[int64]Divergence{}, reported: map[int64]bool{}}
		o.parts[path] = sp
	}
	return sp
}

// takeover applies Takeover to a standby partition. The archive is listed
// only when a local segment is old enough to be taken over and the ranges
// known so far do not cover it, so a healthy designated archiver costs a
// standby about one listing per rolled segment; each manifest is read
// once (they are immutable).
func (o *ownership) takeover(ctx context.Context, a *Agent, ps partitionScan, id BrokerIdentity, now time.Time, grace time.Duration) (map[int64]bool, error) {
	sp := o.part(ps.Path)
	var local []LocalSegment
	for _, c := range ps.Candidates {
		if c.Kind != archive.KindSegment || c.Active || c.NextBase <= c.Base || len(c.Files) == 0 {
			continue
		}
		local = append(local, LocalSegment{Base: c.Base, End: c.NextBase, LastAppend: c.Files[0].MTime})
	}
	in := TakeoverInput{Local: local, Archived: sp.ranges(), Progress: sp.progress, Now: now, Grace: grace}
	in.Progress = time.Time{} // ask: would anything be taken with what is known?
	if len(Takeover(in)) == 0 {
		if !Uncovered(local, in.Archived) {
			sp.takingOver = false
		}
		return nil, nil
	}
	if err := sp.refresh(ctx, a, id, ps, now); err != nil {
		return nil, err
	}
	in.Archived, in.Progress, in.InTakeover = sp.ranges(), sp.progress, sp.takingOver
	take := map[int64]bool{}
	for _, b := range Takeover(in) {
		take[b] = true
	}
	switch {
	case len(take) > 0:
		sp.takingOver = true
	case !Uncovered(local, in.Archived):
		sp.takingOver = false
	}
	return take, nil
}

// skipCovered is the designated archiver's filter: it skips rolled
// segments whose offsets the archive already holds from other replicas (a
// new leader does not archive the history its predecessor archived, nor
// what a standby took over). The archive is listed only when a segment is
// not archived per local state and not covered by the ranges known.
func (o *ownership) skipCovered(ctx context.Context, a *Agent, ps partitionScan, id BrokerIdentity, now time.Time, log interface {
	Warn(string, ...any)
}) func(*candidate) bool {
	sp := o.part(ps.Path)
	var pending []*candidate
	for i := range ps.Candidates {
		c := &ps.Candidates[i]
		if c.Kind == archive.KindSegment && !c.Active && c.NextBase > c.Base && !a.archivedAlready(c) {
			pending = append(pending, c)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	skip := func() map[int64]bool {
		// Only other brokers' copies: this broker's own segment rewritten
		// in place (the log cleaner) is archived again, as in mode all.
		cov := mergeRanges(sp.rangesExcept(id.BrokerID))
		out := map[int64]bool{}
		for _, c := range pending {
			if covered(cov, OffsetRange{c.Base, c.NextBase}) {
				out[c.Base] = true
			}
		}
		return out
	}
	s := skip()
	if len(s) < len(pending) {
		if err := sp.refresh(ctx, a, id, ps, now); err != nil {
			log.Warn("cannot tell what the archive holds for this partition; archiving every rolled segment", "err", err)
			return nil
		}
		s = skip()
	}
	if len(s) == 0 {
		return nil
	}
	return func(c *candidate) bool { return c.Kind != archive.KindSegment || !s[c.Base] }
}

// rangesExcept is ranges without the manifests of broker self.
func (sp *standbyPart) rangesExcept(self int32) []OffsetRange {
	out := make([]OffsetRange, 0, len(sp.manifests))
	for k, r := range sp.manifests {
		if r != nil && sp.broker[k] != self {
			out = append(out, *r)
		}
	}
	return out
}

func (sp *standbyPart) ranges() []OffsetRange {
	out := make([]OffsetRange, 0, len(sp.manifests))
	for _, r := range sp.manifests {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// refresh lists the partition's manifests (every broker's, v1 and v2
// roots) and reads the new ones; growth of the coverage by other brokers'
// manifests moves progress (this broker's own takeover uploads do not: they
// must not restart the grace clock).
func (sp *standbyPart) refresh(ctx context.Context, a *Agent, id BrokerIdentity, ps partitionScan, now time.Time) error {
	prefixes := []string{
		a.layout.PartitionPrefix(id.ClusterID, ps.Dir.Topic, ps.Dir.Partition),
		a.layout.PartitionPrefixV2(id.ClusterID, ps.Dir.Topic, ps.Dir.Partition),
	}
	var keys []string
	for _, p := range prefixes {
		err := a.store.List(ctx, p, func(oi uploader.ObjectInfo) error {
			if k, ok := archive.ParseKey(a.layout, oi.Key); ok && k.Kind == archive.KeySegmentManifest {
				keys = append(keys, oi.Key)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := sp.manifests[k]; ok {
			continue
		}
		data, err := a.store.Get(ctx, k, archive.MaxManifestSize)
		if err != nil {
			return err
		}
		m, err := archive.DecodeSegmentManifest(k, data)
		if err != nil || m.Kind != archive.KindSegment || m.NextSegmentBase <= m.BaseOffset {
			sp.manifests[k] = nil // not readable by this version: counts as not covering
			continue
		}
		sp.manifests[k] = &OffsetRange{Start: m.BaseOffset, End: m.NextSegmentBase}
		sp.logs[k] = newArchivedLog(k, m)
		sp.broker[k] = m.BrokerID
	}
	sp.listed = now
	var total int64
	for _, r := range mergeRanges(sp.rangesExcept(id.BrokerID)) {
		total += r.End - r.Start
	}
	if total > sp.covered {
		sp.covered, sp.progress = total, now
	}
	return nil
}

// tailStandby tells the tail-capture loop to leave the partition dir path
// to another replica: under archive-replicas=designated, when the last
// pass found this replica a standby that never took any of the
// partition's segments over. It asks the role replicaFilter recorded (no
// bucket request); before the first pass, or in mode all, it is false
// (capturing a duplicate is safe).
func (a *Agent) tailStandby(path string) bool {
	if a.snap().ArchiveReplicas != ArchiveReplicasDesignated {
		return false
	}
	o := a.ownerState()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.roles[path] != roleStandby {
		return false
	}
	return !o.tookOver[path]
}

// noteTakeover remembers a partition this standby took over, for the
// rest of the agent's life: its tail is captured from then on (a
// duplicate if the designated archiver comes back, which is safe).
func (o *ownership) noteTakeover(path, role string) {
	if role != roleTakeover {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tookOver == nil {
		o.tookOver = map[string]bool{}
	}
	o.tookOver[path] = true
}
