package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/segvault/segvault/archive"
)

// lsArchived is an offset range of a partition and the brokers whose
// archived segments hold it (archive-replicas: which broker archived what).
type lsArchived struct {
	First   int64   `json:"first_offset"`
	Last    int64   `json:"last_offset"`
	Brokers []int32 `json:"brokers"`
}

type lsOwnerRange struct {
	start, end int64 // [start, end)
	broker     int32
}

// lsOwners indexes the catalog's decoded segment manifests by partition
// (cluster/topic-id/topic/partition): each one's offset range and broker.
func lsOwners(src *lsSource, cat *archive.Catalog) map[string][]lsOwnerRange {
	out := map[string][]lsOwnerRange{}
	for _, v := range cat.Versions {
		data, ok := src.data[v.Manifest.Key]
		if !ok {
			continue
		}
		m, err := archive.DecodeSegmentManifest(v.Manifest.Key, data)
		if err != nil || m.Kind != archive.KindSegment || m.NextSegmentBase <= m.BaseOffset {
			continue
		}
		k := lsOwnerKey(m.ClusterID, m.TopicID, m.Topic, m.Partition)
		out[k] = append(out[k], lsOwnerRange{m.BaseOffset, m.NextSegmentBase, m.BrokerID})
	}
	return out
}

func lsOwnerKey(cluster, topicID, topic string, partition int32) string {
	return fmt.Sprintf("%s/%s/%s/%d", cluster, topicID, topic, partition)
}

// lsArchivedBy splits a partition's archived offsets into ranges held by
// the same set of brokers, in offset order; adjacent ranges with the same
// brokers are merged.
func lsArchivedBy(rs []lsOwnerRange) []lsArchived {
	var cuts []int64
	for _, r := range rs {
		cuts = append(cuts, r.start, r.end)
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	out := []lsArchived{}
	for i := 0; i+1 < len(cuts); i++ {
		s, e := cuts[i], cuts[i+1]
		if s == e {
			continue
		}
		set := map[int32]bool{}
		for _, r := range rs {
			if r.start <= s && r.end >= e {
				set[r.broker] = true
			}
		}
		if len(set) == 0 {
			continue
		}
		var bs []int32
		for b := range set {
			bs = append(bs, b)
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
		if n := len(out); n > 0 && out[n-1].Last+1 == s && fmt.Sprint(out[n-1].Brokers) == fmt.Sprint(bs) {
			out[n-1].Last = e - 1
			continue
		}
		out = append(out, lsArchived{First: s, Last: e - 1, Brokers: bs})
	}
	return out
}

// lsArchivedText renders the ARCHIVED BY column compactly: the brokers
// ("+"-joined) of each range and the offset it starts at, "2@0,1+3@135";
// just "2" when one set of brokers holds everything archived.
func lsArchivedText(as []lsArchived) string {
	if len(as) == 0 {
		return "-"
	}
	var parts []string
	for _, a := range as {
		var bs []string
		for _, b := range a.Brokers {
			bs = append(bs, fmt.Sprint(b))
		}
		if len(as) == 1 {
			return strings.Join(bs, "+")
		}
		parts = append(parts, fmt.Sprintf("%s@%d", strings.Join(bs, "+"), a.First))
	}
	return strings.Join(parts, ",")
}
