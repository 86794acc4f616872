package archive

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ArchiveInfo is `segvault info`: per cluster, broker, topic and partition,
// what a restore can get and how fresh it is (docs/OPERATIONS.md, "Info").
type ArchiveInfo struct {
	Now      time.Time     `json:"now"`
	Clusters []ClusterInfo `json:"clusters"`
}

// ClusterInfo sums a cluster.
type ClusterInfo struct {
	Cluster string `json:"cluster"`
	RestoreWindow
	RawBytes    int64        `json:"raw_bytes"`
	StoredBytes int64        `json:"stored_bytes"`
	Gaps        int          `json:"gaps"`
	Brokers     []BrokerInfo `json:"brokers"`
	Topics      []TopicInfo  `json:"topics"`
}

// RestoreWindow is the range of times a restore can be asked for: the
// first and the newest record time the archive holds (a --to-time before
// Earliest restores nothing), and the newest restorable offset.
type RestoreWindow struct {
	Earliest     time.Time `json:"earliest_time,omitzero"`
	Latest       time.Time `json:"latest_time,omitzero"`
	NewestOffset int64     `json:"newest_offset"`
}

func (w *RestoreWindow) merge(o RestoreWindow) {
	if !o.Earliest.IsZero() && (w.Earliest.IsZero() || o.Earliest.Before(w.Earliest)) {
		w.Earliest = o.Earliest
	}
	if o.Latest.After(w.Latest) {
		w.Latest = o.Latest
	}
	w.NewestOffset = max(w.NewestOffset, o.NewestOffset)
}

// BrokerInfo is one broker's share: its RPO now is the largest age of the
// newest data it archived, over its partitions.
type BrokerInfo struct {
	Broker      int32     `json:"broker"`
	Partitions  int       `json:"partitions"`
	RawBytes    int64     `json:"raw_bytes"`
	StoredBytes int64     `json:"stored_bytes"`
	NewestAt    time.Time `json:"newest_archived_at,omitzero"`
	RPO         Seconds   `json:"rpo_seconds"`
	RPOWorst    string    `json:"rpo_worst_partition,omitempty"`
}

// TopicInfo sums a topic.
type TopicInfo struct {
	Topic string `json:"topic"`
	RestoreWindow
	RawBytes    int64           `json:"raw_bytes"`
	StoredBytes int64           `json:"stored_bytes"`
	Gaps        int             `json:"gaps"`
	RPO         Seconds         `json:"rpo_seconds"`
	Partitions  []PartitionInfo `json:"partitions"`
}

// PartitionInfo is one partition (its newest incarnation).
type PartitionInfo struct {
	Partition int32   `json:"partition"`
	TopicID   string  `json:"topic_id"`
	Brokers   []int32 `json:"brokers"`
	RestoreWindow
	Versions    int       `json:"versions"` // archived segment versions, all kept ones
	RawBytes    int64     `json:"raw_bytes"`
	StoredBytes int64     `json:"stored_bytes"`
	Gaps        []InfoGap `json:"gaps,omitempty"`
	NewestAt    time.Time `json:"newest_archived_at,omitzero"`
	RPO         Seconds   `json:"rpo_seconds"`
}

// InfoGap is an offset range [From, To) no archived segment holds.
type InfoGap struct {
	From   int64  `json:"from"`
	To     int64  `json:"to"`
	Reason string `json:"reason"`
}

// Info summarises inv at now.
func Info(inv *PruneInventory, now time.Time) *ArchiveInfo {
	type pk struct {
		cluster, topic string
		partition      int32
	}
	byPart := map[pk][]*PruneVersion{}
	for i := range inv.Versions {
		v := &inv.Versions[i]
		if v.M == nil || v.M.Kind != KindSegment && v.M.Kind != KindKRaftSnapshot {
			continue
		}
		k := pk{v.Cluster, v.M.Topic, v.M.Partition}
		byPart[k] = append(byPart[k], v)
	}
	gaps := map[pk][]*GapMarker{}
	for _, g := range inv.Gaps {
		if g.G != nil {
			k := pk{g.Cluster, g.G.Topic, g.G.Partition}
			gaps[k] = append(gaps[k], g.G)
			if byPart[k] == nil {
				byPart[k] = []*PruneVersion{}
			}
		}
	}
	tails := map[pk][]TailCapture{}
	tailAt := map[pk]time.Time{}
	tailBroker := map[pk]int32{}
	for _, tl := range inv.Tails {
		if tl.T == nil {
			continue
		}
		for _, c := range tl.T.Captures {
			k := pk{tl.Cluster, c.Topic, c.Partition}
			tails[k] = append(tails[k], c)
			if tl.T.CapturedAt.After(tailAt[k]) {
				tailAt[k], tailBroker[k] = tl.T.CapturedAt, tl.T.BrokerID
			}
			if byPart[k] == nil {
				byPart[k] = []*PruneVersion{}
			}
		}
	}
	out := &ArchiveInfo{Now: now}
	clusters := map[string]*ClusterInfo{}
	topics := map[[2]string]*TopicInfo{}
	brokers := map[string]map[int32]*BrokerInfo{}
	var keys []pk
	for k := range byPart {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		return a.cluster < b.cluster || a.cluster == b.cluster && (a.topic < b.topic || a.topic == b.topic && a.partition < b.partition)
	})
	for _, k := range keys {
		vs := byPart[k]
		pi := PartitionInfo{Partition: k.partition, RestoreWindow: RestoreWindow{NewestOffset: -1}}
		// Incarnation: the topic id with the newest version, as restore picks.
		var newest time.Time
		for _, v := range vs {
			if t := v.M.Time(); pi.TopicID == "" || t.After(newest) {
				pi.TopicID, newest = v.M.TopicID, t
			}
		}
		byBroker := map[int32][]*PruneVersion{}
		perBrokerNewest := map[int32]time.Time{}
		for _, v := range vs {
			if v.M.TopicID != pi.TopicID {
				continue
			}
			pi.Versions++
			for _, f := range v.M.Files {
				pi.RawBytes += f.Size
			}
			pi.StoredBytes += v.Manifest.Size
			for _, d := range v.Data {
				pi.StoredBytes += d.Size
			}
			if v.M.Kind == KindSegment {
				byBroker[v.M.BrokerID] = append(byBroker[v.M.BrokerID], v)
			}
			if t := v.CaptureTime(); t.After(perBrokerNewest[v.M.BrokerID]) {
				perBrokerNewest[v.M.BrokerID] = t
			}
			if t := v.CaptureTime(); t.After(pi.NewestAt) {
				pi.NewestAt = t
			}
		}
		var live []*PruneVersion
		for b, bvs := range byBroker {
			pi.Brokers = append(pi.Brokers, b)
			// restore's view: the newest versions whatever their capture
			// time (a bucket clock ahead of this host's puts it after now)
			for _, i := range liveAt(bvs, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false) {
				live = append(live, bvs[i])
			}
		}
		sort.Slice(pi.Brokers, func(i, j int) bool { return pi.Brokers[i] < pi.Brokers[j] })
		for _, v := range live {
			s := v.M.Summary
			if s == nil {
				continue
			}
			if s.LastOffset >= 0 {
				pi.NewestOffset = max(pi.NewestOffset, s.LastOffset)
			}
			if s.FirstTimestamp > 0 {
				if t := time.UnixMilli(s.FirstTimestamp).UTC(); pi.Earliest.IsZero() || t.Before(pi.Earliest) {
					pi.Earliest = t
				}
			}
			if s.MaxTimestamp > 0 {
				if t := time.UnixMilli(s.MaxTimestamp).UTC(); t.After(pi.Latest) {
					pi.Latest = t
				}
			}
		}
		for _, c := range tails[k] {
			if c.TopicID != pi.TopicID && pi.TopicID != "" {
				continue
			}
			pi.NewestOffset = max(pi.NewestOffset, c.LastOffset)
			if c.MaxTimestamp > 0 {
				if t := time.UnixMilli(c.MaxTimestamp).UTC(); t.After(pi.Latest) {
					pi.Latest = t
				}
			}
		}
		if t := tailAt[k]; t.After(pi.NewestAt) {
			pi.NewestAt = t
			if t.After(perBrokerNewest[tailBroker[k]]) {
				perBrokerNewest[tailBroker[k]] = t
			}
		}
		if !pi.NewestAt.IsZero() {
			pi.RPO = Seconds(now.Sub(pi.NewestAt))
		}
		// Gaps: holes between the live segments, and marked losses no
		// segment covers.
		sort.Slice(live, func(i, j int) bool { return live[i].M.BaseOffset < live[j].M.BaseOffset })
		end := int64(-1)
		for _, v := range live {
			if end >= 0 && v.M.BaseOffset > end {
				pi.Gaps = append(pi.Gaps, InfoGap{From: end, To: v.M.BaseOffset, Reason: "segments missing from the archive"})
			}
			end = max(end, v.M.NextSegmentBase)
		}
		for _, g := range gaps[k] {
			if g.TopicID == pi.TopicID || len(live) == 0 {
				if rangeCovered(live, g.BaseOffset, max(g.NextBase, g.BaseOffset+1)) {
					continue
				}
				why := "lost on broker " + itoa(int64(g.BrokerID)) + ": " + g.Reason
				found := false
				for i, h := range pi.Gaps {
					if h.From <= g.BaseOffset && g.NextBase <= h.To {
						pi.Gaps[i].Reason, found = why, true // a hole the marker explains
						break
					}
				}
				if !found {
					pi.Gaps = append(pi.Gaps, InfoGap{From: g.BaseOffset, To: g.NextBase, Reason: why})
				}
			}
		}
		sort.Slice(pi.Gaps, func(i, j int) bool { return pi.Gaps[i].From < pi.Gaps[j].From })

		ci := clusters[k.cluster]
		if ci == nil {
			ci = &ClusterInfo{Cluster: k.cluster, RestoreWindow: RestoreWindow{NewestOffset: -1}}
			clusters[k.cluster] = ci
			brokers[k.cluster] = map[int32]*BrokerInfo{}
		}
		ti := topics[[2]string{k.cluster, k.topic}]
		if ti == nil {
			ti = &TopicInfo{Topic: k.topic, RestoreWindow: RestoreWindow{NewestOffset: -1}}
			topics[[2]string{k.cluster, k.topic}] = ti
		}
		ti.Partitions = append(ti.Partitions, pi)
		ti.RestoreWindow.merge(pi.RestoreWindow)
		ti.RawBytes += pi.RawBytes
		ti.StoredBytes += pi.StoredBytes
		ti.Gaps += len(pi.Gaps)
		ti.RPO = max(ti.RPO, pi.RPO)
		for b, t := range perBrokerNewest {
			bi := brokers[k.cluster][b]
			if bi == nil {
				bi = &BrokerInfo{Broker: b}
				brokers[k.cluster][b] = bi
			}
			bi.Partitions++
			if t.After(bi.NewestAt) {
				bi.NewestAt = t
			}
			if r := Seconds(now.Sub(t)); r > bi.RPO {
				bi.RPO, bi.RPOWorst = r, k.topic+"-"+itoa(int64(k.partition))
			}
		}
		for _, v := range vs {
			if bi := brokers[k.cluster][v.M.BrokerID]; bi != nil && v.M.TopicID == pi.TopicID {
				for _, f := range v.M.Files {
					bi.RawBytes += f.Size
				}
				bi.StoredBytes += v.Manifest.Size
				for _, d := range v.Data {
					bi.StoredBytes += d.Size
				}
			}
		}
	}
	// Stored is every object in the bucket: the cluster's total counts the
	// tail captures (manifests and packs), gap markers, log-dir captures,
	// orphans and deletion marks too; a broker's its tail captures, gap
	// markers and log-dir captures.
	extra := func(cluster string, broker int32, n int64) {
		if ci := clusters[cluster]; ci != nil {
			ci.StoredBytes += n
		}
		if bi := brokers[cluster][broker]; bi != nil && broker >= 0 {
			bi.StoredBytes += n
		}
	}
	packBroker := map[string]int32{}
	for _, tl := range inv.Tails {
		b := int32(-1)
		if tl.T != nil {
			b = tl.T.BrokerID
			packBroker[tl.T.PackKey] = b
		}
		extra(tl.Cluster, b, tl.Object.Size)
	}
	for _, p := range inv.Packs {
		b, ok := packBroker[p.Object.Key]
		if !ok {
			b = -1
		}
		extra(p.Cluster, b, p.Object.Size)
	}
	for _, g := range inv.Gaps {
		b := int32(-1)
		if g.G != nil {
			b = g.G.BrokerID
		}
		extra(g.Cluster, b, g.Object.Size)
	}
	for _, ld := range inv.LogDirs {
		extra(ld.Cluster, ld.Broker, ld.Object.Size)
	}
	for _, o := range inv.Orphans {
		extra(o.Cluster, -1, o.Object.Size)
	}
	for _, m := range inv.Marks {
		// <prefix>v2/<cluster>/deletion-marks/<id>.json
		if f := strings.Split(m.Object.Key, "/"); len(f) >= 3 && f[len(f)-2] == DeletionMarkDir {
			extra(f[len(f)-3], -1, m.Object.Size)
		}
	}
	var cs []string
	for c := range clusters {
		cs = append(cs, c)
	}
	sort.Strings(cs)
	for _, c := range cs {
		ci := clusters[c]
		for tk, ti := range topics {
			if tk[0] != c {
				continue
			}
			ci.Topics = append(ci.Topics, *ti)
			ci.RestoreWindow.merge(ti.RestoreWindow)
			ci.RawBytes += ti.RawBytes
			ci.StoredBytes += ti.StoredBytes
			ci.Gaps += ti.Gaps
		}
		sort.Slice(ci.Topics, func(i, j int) bool { return ci.Topics[i].Topic < ci.Topics[j].Topic })
		for _, bi := range brokers[c] {
			ci.Brokers = append(ci.Brokers, *bi)
		}
		sort.Slice(ci.Brokers, func(i, j int) bool { return ci.Brokers[i].Broker < ci.Brokers[j].Broker })
		out.Clusters = append(out.Clusters, *ci)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Seconds is a duration that JSON encodes as seconds (a number), as every
// segvault --json output does (restore's duration_seconds).
type Seconds time.Duration

// String is the time.Duration form (logs and text output).
func (s Seconds) String() string { return time.Duration(s).String() }

// D is s as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// MarshalJSON writes s in seconds, to the millisecond.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(s).Round(time.Millisecond).Seconds(), 'f', -1, 64)), nil
}

// UnmarshalJSON reads seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("seconds: %w", err)
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}
