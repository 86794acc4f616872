package agent

import (
	"sort"
	"time"

	"github.com/segvault/segvault/index"
)

// One archived copy per partition (issue 16): who archives a partition is
// decided without the Kafka protocol. On KRaft clusters every broker has a
// replica of __cluster_metadata on its own disk, so every agent can compute
// the same answer from its own copy (Designate). Where the metadata does not
// settle it (ZooKeeper-era clusters, a partition the image does not hold, no
// live replica), a claim in the bucket does (archive/claim.go). Whatever the
// mechanism, correctness never depends on it: two agents archiving the same
// partition stay safe (distinct keys per broker, create-only writes), only
// wasteful; and a replica that is not designated still takes over when the
// archive falls behind its own rolled data (Takeover).

// Designate returns the broker that archives a partition: its leader when
// the metadata knows one (leader >= 0), else the first replica in the
// replica list (preferred order) that live reports as live. ok is false when
// neither exists: the caller falls back to a bucket claim or to archiving
// every replica. It is a pure function of its arguments, so agents holding
// the same metadata agree.
func Designate(replicas []int32, leader int32, live func(int32) bool) (broker int32, ok bool) {
	if leader >= 0 {
		return leader, true
	}
	for _, r := range replicas {
		if live != nil && live(r) {
			return r, true
		}
	}
	return -1, false
}

// Role is what this agent does with one partition.
type Role int

const (
	// RoleArchive: this broker is the designated archiver.
	RoleArchive Role = iota
	// RoleStandby: another broker is designated; archive only on takeover.
	RoleStandby
	// RoleUndecided: the metadata does not settle it (no metadata, unknown
	// partition, no leader and no live replica): claims decide, or every
	// replica archives.
	RoleUndecided
)

func (r Role) String() string {
	switch r {
	case RoleArchive:
		return "archive"
	case RoleStandby:
		return "standby"
	default:
		return "undecided"
	}
}

// MetadataRole applies Designate to a partition of the KRaft metadata image
// md for broker self. A replica is live when the metadata holds its
// registration unfenced. A partition whose replica list does not contain
// self (a stray or reassigned-away replica) is RoleArchive: nobody else
// archives what only this disk holds, and a duplicate is only waste.
func MetadataRole(md *index.ClusterMetadata, self int32, topic string, partition int32) (Role, int32) {
	if md == nil {
		return RoleUndecided, -1
	}
	p, ok := md.Partition(topic, partition)
	if !ok {
		return RoleUndecided, -1
	}
	if !containsBroker(p.Replicas, self) {
		return RoleArchive, self
	}
	live := func(id int32) bool {
		l, known := md.BrokerLive(id)
		return l && known
	}
	who, ok := Designate(p.Replicas, p.Leader, live)
	switch {
	case !ok:
		return RoleUndecided, -1
	case who == self:
		return RoleArchive, who
	default:
		return RoleStandby, who
	}
}

func containsBroker(list []int32, id int32) bool {
	for _, v := range list {
		if v == id {
			return true
		}
	}
	return false
}

// Defers reports whether standby self leaves a takeover to another
// standby first: a replica other than the designated broker, with a lower
// broker id, that live reports as live. Every agent applies the same rule,
// so of several standbys only the lowest takes over at the grace; the
// others wait a second grace (in case that one's agent is down too) and
// see its uploads as archive growth meanwhile.
func Defers(replicas []int32, designated, self int32, live func(int32) bool) bool {
	for _, r := range replicas {
		if r != designated && r != self && r < self && live != nil && live(r) {
			return true
		}
	}
	return false
}

// StandbyMetadataGrace is the grace of standby self for a partition of md
// whose designated broker is who: grace, doubled when self Defers.
func StandbyMetadataGrace(md *index.ClusterMetadata, self, who int32, topic string, partition int32, grace time.Duration) time.Duration {
	if md == nil {
		return grace
	}
	p, ok := md.Partition(topic, partition)
	if !ok {
		return grace
	}
	live := func(id int32) bool {
		l, known := md.BrokerLive(id)
		return l && known
	}
	if Defers(p.Replicas, who, self, live) {
		return 2 * grace
	}
	return grace
}

// ClaimStandbyGrace is the least takeover grace of a standby whose
// partition a claim (not the KRaft metadata) gives to another broker: the
// claim TTL plus two scans, so that when the owner dies its claim is taken
// over (and one broker archives) before any standby archives from the
// archive's coverage alone.
func ClaimStandbyGrace(ttl, scan time.Duration) time.Duration { return ttl + 2*scan }

// OffsetRange is a half-open offset range [Start, End).
type OffsetRange struct{ Start, End int64 }

// LocalSegment is one rolled segment of this replica.
type LocalSegment struct {
	Base       int64     // base offset (file name)
	End        int64     // next offset after its last batch
	LastAppend time.Time // the .log's mtime: when it last grew, on this machine's clock
}

// TakeoverGrace is how long a standby replica lets the archive lag behind
// its own rolled data before archiving it itself: a few settle times (the
// designated agent waits that long before uploading) plus a scan interval
// (it may notice the roll only on its next rescan), plus one more scan for
// the upload itself.
func TakeoverGrace(settle, scan time.Duration) time.Duration {
	return 3*settle + 2*scan
}

// TakeoverInput is what a standby replica knows about one partition.
type TakeoverInput struct {
	Local    []LocalSegment // this replica's rolled segments
	Archived []OffsetRange  // segment ranges in the archive, every replica's, any order, may overlap
	// Progress is when this agent last saw the archive's coverage of the
	// partition grow (or when it started watching: a fresh agent waits one
	// grace before taking anything over), on its own clock.
	Progress time.Time
	// InTakeover: this standby already took the partition over and the
	// archive does not yet cover its rolled data. Progress is not consulted
	// then: the archive's growth meanwhile is mostly this standby's (or
	// another standby's) takeover uploads, and letting it restart the clock
	// would make each further segment wait another grace.
	InTakeover bool
	Now        time.Time
	Grace      time.Duration
}

// Takeover returns, in base-offset order, the rolled local segments a
// standby replica must archive now: those holding offsets no archived
// segment (of any replica) covers, that rolled more than Grace ago, while
// the archive has not grown for more than Grace either (a designated
// archiver working through a backlog keeps its partitions), or while the
// standby is in takeover already (InTakeover). Only times of
// this machine's clock are compared. Segment boundaries differ between
// replicas, so coverage is by offset, not by base offset.
func Takeover(in TakeoverInput) []int64 {
	if !in.InTakeover && in.Now.Sub(in.Progress) <= in.Grace {
		return nil
	}
	cov := mergeRanges(in.Archived)
	var out []int64
	for _, s := range in.Local {
		if s.End <= s.Base || in.Now.Sub(s.LastAppend) <= in.Grace {
			continue
		}
		if !covered(cov, OffsetRange{s.Base, s.End}) {
			out = append(out, s.Base)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Uncovered reports whether any rolled local segment, whatever its age,
// holds offsets no archived range covers: a standby in takeover stays in
// takeover until it returns false.
func Uncovered(local []LocalSegment, archived []OffsetRange) bool {
	cov := mergeRanges(archived)
	for _, s := range local {
		if s.End > s.Base && !covered(cov, OffsetRange{s.Base, s.End}) {
			return true
		}
	}
	return false
}

// mergeRanges returns the union of rs as sorted, disjoint, non-adjacent
// ranges.
func mergeRanges(rs []OffsetRange) []OffsetRange {
	in := make([]OffsetRange, 0, len(rs))
	for _, r := range rs {
		if r.End > r.Start {
			in = append(in, r)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Start < in[j].Start })
	var out []OffsetRange
	for _, r := range in {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// covered reports whether the merged ranges cov contain all of r.
func covered(cov []OffsetRange, r OffsetRange) bool {
	i := sort.Search(len(cov), func(i int) bool { return cov[i].End > r.Start })
	return i < len(cov) && cov[i].Start <= r.Start && cov[i].End >= r.End
}
