package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// Cross-replica checking (issue 16): a standby replica does not upload its
// rolled segments, but it compares each with the copy another broker
// archived, so a disk that silently diverges is reported (log and metric)
// without uploading anything. The archived .log's raw CRC-32C per v2 chunk
// (or the whole file's, v1) is in its manifest; the standby computes the
// same over the same byte ranges of its own file in one rate-limited read.

// Partition roles (the segvault_agent_partition_roles gauge).
const (
	roleOwner    = "owner"
	roleStandby  = "standby"
	roleTakeover = "takeover"
)

// Results of a divergence check (segvault_agent_replica_divergence_total).
const (
	DivergenceSame          = "same"
	DivergenceDiverged      = "diverged"
	DivergenceNotComparable = "not_comparable"
)

// Divergence is a standby's rolled segment whose bytes differ from the copy
// another broker archived with the same base offset and size.
type Divergence struct {
	Topic       string
	Partition   int32
	BaseOffset  int64
	File        string // the local .log
	Broker      int32  // the broker whose copy is archived
	ManifestKey string
	DataKey     string // the archived .log's object (v2 data key or v1 object)
	Start, End  int64  // the first differing chunk's byte range [Start, End)
	Bytes       int64  // the .log's size (both copies)
	TopicID     string // of the local partition (the report's key)
	At          time.Time
	// ReportKey is the divergence report's key in the bucket.
	ReportKey string
}

// archivedLog is what a manifest says about its .log for comparisons.
type archivedLog struct {
	key    string
	broker int32
	base   int64
	size   int64
	data   string
	chunks []crcRange // nil: no raw CRCs to compare with
}

type crcRange struct {
	start, end int64
	crc        string
}

// newArchivedLog extracts the .log's raw CRC ranges: the v2 chunks in
// order from byte 0, or the v1 whole-file CRC-32C.
func newArchivedLog(key string, m *archive.SegmentManifest) *archivedLog {
	f, ok := m.LogFile()
	if !ok {
		return nil
	}
	l := &archivedLog{key: key, broker: m.BrokerID, base: m.BaseOffset, size: f.Size, data: f.Object.Key}
	if f.IsV2() {
		l.data = f.DataKey
		var pos int64
		for _, c := range f.Chunks {
			if c.RawSize <= 0 || c.RawCRC32C == "" {
				return l
			}
			l.chunks = append(l.chunks, crcRange{pos, pos + c.RawSize, c.RawCRC32C})
			pos += c.RawSize
		}
		if pos != f.Size {
			l.chunks = nil
		}
		return l
	}
	if f.CRC32C != "" {
		l.chunks = []crcRange{{0, f.Size, f.CRC32C}}
	}
	return l
}

// maxCompareBytes bounds the bytes one pass reads for comparisons (all
// partitions together); the rest waits for the next pass.
const maxCompareBytes = 256 << 20

// compare checks a standby partition's rolled segments (those not taken
// over) against other brokers' archived copies, once per segment. A
// segment whose offsets the archive does not cover yet waits; one covered
// only by copies with other boundaries or sizes is not comparable.
func (o *ownership) compare(ctx context.Context, a *Agent, ps partitionScan, id BrokerIdentity, take map[int64]bool, now time.Time, log interface {
	Warn(string, ...any)
}) {
	sp := o.part(ps.Path)
	for base, d := range sp.diverged { // reports a failed write left pending
		if !sp.reported[base] && ctx.Err() == nil {
			sp.reported[base] = a.reportDivergence(ctx, id, d, log)
		}
	}
	var todo []*candidate
	for i := range ps.Candidates {
		c := &ps.Candidates[i]
		if c.Kind != archive.KindSegment || c.Active || c.NextBase <= c.Base || len(c.Files) == 0 || take[c.Base] || sp.checked[c.Base] {
			continue
		}
		todo = append(todo, c)
	}
	if len(todo) == 0 {
		return
	}
	find := func(c *candidate) (same *archivedLog, other bool) {
		for _, l := range sp.logs {
			if l == nil || l.broker == id.BrokerID || l.base != c.Base {
				continue
			}
			if l.size == c.Files[0].Size && l.chunks != nil {
				return l, false
			}
			other = true
		}
		return nil, other
	}
	// List again (at most once a scan interval) when a segment has no
	// archived copy known yet.
	if now.Sub(sp.listed) >= a.snap().ScanInterval {
		for _, c := range todo {
			if l, other := find(c); l == nil && !other {
				if err := sp.refresh(ctx, a, id, ps, now); err != nil {
					log.Warn("cannot list the archive to compare this standby replica's segments", "err", err)
					return
				}
				break
			}
		}
	}
	cov := mergeRanges(sp.ranges())
	for _, c := range todo {
		l, other := find(c)
		if l == nil {
			if other || covered(cov, OffsetRange{c.Base, c.NextBase}) {
				sp.checked[c.Base] = true
				a.metrics.ReplicaDivergence.WithLabelValues(DivergenceNotComparable).Inc()
			}
			continue
		}
		o.mu.Lock()
		over := o.compared >= maxCompareBytes
		if !over {
			o.compared += l.size
		}
		o.mu.Unlock()
		if over {
			return
		}
		path := filepath.Join(c.DirPath, c.Files[0].src())
		d, err := compareFile(ctx, a, path, l)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot compare this standby replica's segment with the archived copy", "file", path, "key", l.key, "err", err)
			}
			continue
		}
		sp.checked[c.Base] = true
		if d == nil {
			a.metrics.ReplicaDivergence.WithLabelValues(DivergenceSame).Inc()
			continue
		}
		d.Topic, d.Partition, d.BaseOffset, d.File = ps.Dir.Topic, ps.Dir.Partition, c.Base, path
		d.Bytes, d.TopicID, d.At = l.size, a.topicID(c), now.UTC()
		d.ReportKey = a.layout.DivergenceKey(archive.SegmentRef{Cluster: id.ClusterID, Topic: d.Topic, Partition: d.Partition,
			TopicID: d.TopicID, BaseOffset: c.Base, Broker: id.BrokerID})
		sp.diverged[c.Base] = *d
		a.metrics.ReplicaDivergence.WithLabelValues(DivergenceDiverged).Inc()
		log.Warn("this replica's rolled segment differs from the copy another broker archived (same base offset and size): its disk diverged",
			"file", path, "broker", d.Broker, "key", d.ManifestKey, "data_key", d.DataKey,
			"first_diff", fmt.Sprintf("bytes [%d, %d)", d.Start, d.End), "base_offset", c.Base, "report", d.ReportKey)
		sp.reported[c.Base] = a.reportDivergence(ctx, id, *d, log)
	}
}

// reportDivergence writes d's divergence report (create-only; one already
// there, from an earlier pass or run, counts as written), so ls and the
// scrub show it; false when the write failed (retried next pass).
func (a *Agent) reportDivergence(ctx context.Context, id BrokerIdentity, d Divergence, log interface {
	Warn(string, ...any)
}) bool {
	r := archive.DivergenceReport{Format: archive.DivergenceFormat, Version: archive.ManifestVersion, ClusterID: id.ClusterID,
		BrokerID: id.BrokerID, Topic: d.Topic, Partition: d.Partition, TopicID: d.TopicID, BaseOffset: d.BaseOffset, Bytes: d.Bytes,
		ArchivedBroker: d.Broker, ManifestKey: d.ManifestKey, DataKey: d.DataKey, FirstDiffStart: d.Start, FirstDiffEnd: d.End, DetectedAt: d.At}
	data, err := json.MarshalIndent(r, "", " ")
	if err == nil {
		err = a.store.PutManifest(ctx, d.ReportKey, data)
	}
	if err != nil && !errors.Is(err, uploader.ErrConflict) {
		if ctx.Err() == nil {
			a.metrics.Failures.WithLabelValues("divergence_report").Inc()
			log.Warn("divergence report not written yet; will retry", "key", d.ReportKey, "err", err)
		}
		return false
	}
	return true
}

// compareFile reads path once (rate limited) and compares the raw CRC-32C
// of each of l's byte ranges; nil when all match.
func compareFile(ctx context.Context, a *Agent, path string, l *archivedLog) (*Divergence, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != l.size {
		return nil, fmt.Errorf("%s: size %d, the archived copy %s has %d (changed since the scan)", path, fi.Size(), l.key, l.size)
	}
	r := a.limitRead(ctx, f)
	buf := make([]byte, 1<<20)
	for _, ch := range l.chunks {
		h := crc32.New(castagnoli)
		if _, err := io.CopyBuffer(h, io.LimitReader(r, ch.end-ch.start), buf); err != nil {
			return nil, fmt.Errorf("%s: read at byte %d: %w", path, ch.start, err)
		}
		want, err := strconv.ParseUint(ch.crc, 16, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: raw crc32c %q of bytes [%d, %d) is not hex", l.key, ch.crc, ch.start, ch.end)
		}
		if h.Sum32() != uint32(want) {
			return &Divergence{Broker: l.broker, ManifestKey: l.key, DataKey: l.data, Start: ch.start, End: ch.end}, nil
		}
	}
	if n, _ := r.Read(buf[:1]); n > 0 {
		return nil, errors.New(path + ": grew while compared")
	}
	return nil, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// setRole records a partition's role for the partition_roles gauge.
func (o *ownership) setRole(path, role string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.roles == nil {
		o.roles = map[string]string{}
	}
	o.roles[path] = role
}

// noteRoles sets the partition_roles gauge after a pass; partitions not
// seen are forgotten unless part of the log dirs could not be scanned.
func (a *Agent) noteRoles(parts map[string]bool, partial bool) {
	o := a.ownerState()
	o.mu.Lock()
	o.compared = 0
	n := map[string]int{roleOwner: 0, roleStandby: 0, roleTakeover: 0}
	for p, r := range o.roles {
		if !parts[p] && !partial {
			delete(o.roles, p)
			continue
		}
		n[r]++
	}
	o.mu.Unlock()
	for r, v := range n {
		a.metrics.PartitionRoles.WithLabelValues(r).Set(float64(v))
	}
}

// Divergences returns the standby segments found to differ from the
// archived copy, by partition dir and base offset.
func (a *Agent) Divergences() []Divergence {
	o := a.ownerState()
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Divergence
	for _, sp := range o.parts {
		for _, d := range sp.diverged {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].BaseOffset < out[j].BaseOffset
	})
	return out
}
