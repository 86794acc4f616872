package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

func lsCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML config file (store options)", EnvVars: env("config")},
		&cli.StringFlag{Name: "cluster", Usage: "only this cluster"},
		&cli.StringFlag{Name: "topic", Usage: "only topics matching this regular expression"},
		&cli.BoolFlag{Name: "json", Usage: "JSON output"},
		&cli.BoolFlag{Name: "allow-empty", Usage: "exit 0 when the archive holds nothing under the prefix"},
		&cli.BoolFlag{Name: "wide", Usage: "table: also the CLUSTER (always shown when the archive holds several) and TOPIC ID columns"},
	}, storeFlags()...)
	return &cli.Command{
		Name:  "ls",
		Usage: "list what the archive holds: clusters, brokers, topics, partitions, offset and time ranges, gaps",
		Description: `Prints one line per archived partition: its topic id, the brokers whose copies are archived,
the segments (and KRaft snapshots), the offset and time range, raw and stored bytes, and GAPS ("-": none):
offset ranges missing from the archive ("100..199"), marked "(lost)" when the agent recorded
that Kafka deleted the segment before it could be archived (a gap marker), and lost segments
no missing range covers as "lost:FROM..TO". Partitions whose every segment was lost are listed
too. A manifest that does not decode or verify is named on standard error (and under
"bad_manifests" of its partition in --json, "bad-manifests:N" in GAPS) and left out; the rest is
listed and the exit status is 1. "diverged:bN@BASE" in GAPS: broker N's agent found its replica of
the segment at BASE to differ from the archived copy (a divergence report; --json
"diverged_replicas" names both copies and the first differing byte range): the archive is intact,
broker N's disk is not. An archive that holds nothing under the prefix is exit 1
(a mistyped --prefix), unless --allow-empty. OFFSETS "empty at N": the archived segments hold no record, the next offset is N;
"snapshot N": only KRaft snapshots are archived, the newest ends at offset N.
The agent's tail captures of active segments count as archived: OFFSETS and TIME RANGE end at the
newest restorable offset (--json: restorable_offset, restorable_time, restorable_from "tail-capture"
or "rolled", captured_at).
The table shows CLUSTER only when the archive holds several clusters and TOPIC ID only with
--wide. --json prints everything, with the gap markers in full ("lost_segments").

Examples:
  segvault ls --bucket s3://kafka-archive --s3-endpoint minio:9000 --s3-path-style
  segvault ls --bucket file:///backup/segvault --topic '^orders' --json`,
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runLs,
	}
}

// lsPartition is one partition in `ls` output.
type lsPartition struct {
	Cluster   string   `json:"cluster"`
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	TopicID   string   `json:"topic_id"`
	Brokers   []int32  `json:"brokers"`
	Segments  int      `json:"segments"`
	First     int64    `json:"first_offset"`
	Last      int64    `json:"last_offset"`
	FirstTime string   `json:"first_time,omitempty"`
	LastTime  string   `json:"last_time,omitempty"`
	Bytes     int64    `json:"bytes"`
	Stored    int64    `json:"stored_bytes"`
	Gaps      []lsGap  `json:"gaps,omitempty"`
	Lost      []lsLost `json:"lost_segments,omitempty"`
	Older     int      `json:"other_incarnations,omitempty"`
	Bad       []lsBad  `json:"bad_manifests,omitempty"`
	// Diverged: standbys' divergence reports (a replica whose rolled
	// segment differs from the archived copy).
	Diverged []lsDiverged `json:"diverged_replicas,omitempty"`
	// ArchivedBy: which brokers archived each offset range (lsowner.go).
	ArchivedBy []lsArchived `json:"archived_by"`
	snapshot   int64        // end offset of the newest KRaft snapshot, -1 when none
	lsRestorable
}

// lsGap is an offset range missing from the archive, inclusive.
type lsGap struct {
	First  int64  `json:"first_offset"`
	Last   int64  `json:"last_offset"`
	Reason string `json:"reason"`
}

func lsGaps(gaps []restore.Gap) []lsGap {
	var out []lsGap
	for _, g := range gaps {
		out = append(out, lsGap{First: g.From, Last: g.To - 1, Reason: g.Reason})
	}
	return out
}

// lsBad is a manifest of the partition that does not decode or verify: it
// is left out of the listing.
type lsBad struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// lsSource is the archive as ls reads it: every manifest is read and decoded
// once up front; one that does not decode or verify is left out (reported by
// key) instead of failing the whole listing.
type lsSource struct {
	restore.Source
	data map[string][]byte // manifest key: its bytes, read by prefetch
	bad  map[string]error
}

func (s *lsSource) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	return s.Source.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
		if s.bad[oi.Key] != nil {
			return nil
		}
		return fn(oi)
	})
}

func (s *lsSource) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if d, ok := s.data[key]; ok {
		return d, nil
	}
	return s.Source.Get(ctx, key, max)
}

// prefetch reads and decodes every segment and snapshot manifest the
// catalog lists.
func (s *lsSource) prefetch(ctx context.Context, cat *archive.Catalog) error {
	res, err := archive.DecodeManifests(ctx, s.Source.Get, cat.Versions, 8)
	if err != nil {
		return err
	}
	for i, r := range res {
		key := cat.Versions[i].Manifest.Key
		switch {
		case r.ReadErr != nil:
			s.bad[key] = r.ReadErr
		case r.Err != nil:
			s.bad[key] = r.Err
		default:
			s.data[key] = r.Data
		}
	}
	return nil
}

// makePlan plans the listing; a manifest or gap marker that fails the
// plan's checks is left out by restore (Plan.Bad) and recorded here.
func (s *lsSource) makePlan(ctx context.Context, layout archive.Layout, sel restore.Selection) (*restore.Plan, error) {
	sel.LeaveOutBad = true
	plan, err := restore.MakePlan(ctx, s, layout, sel, 8)
	if err != nil {
		return nil, err
	}
	for _, b := range plan.Bad {
		if s.bad[b.Key] == nil {
			s.bad[b.Key] = errors.New(b.Err)
		}
	}
	return plan, nil
}

// dataWins drops the gap markers of segments that are archived after all
// (same broker, same base offset): a marker written in error, for example
// after a transient read failure, must not hide the later upload.
func dataWins(lost []lsLost, segs []restore.Segment) []lsLost {
	have := map[[2]int64]bool{}
	for _, s := range segs {
		have[[2]int64{int64(s.Manifest.BrokerID), s.Manifest.BaseOffset}] = true
	}
	var out []lsLost
	for _, l := range lost {
		if !have[[2]int64{int64(l.Broker), l.BaseOffset}] {
			out = append(out, l)
		}
	}
	return out
}

// lsKeyed is err naming key (decode errors already do).
func lsKeyed(key string, err error) error {
	if strings.Contains(err.Error(), key) {
		return err
	}
	return fmt.Errorf("manifest %s: %w", key, err)
}

// badPartition returns the cluster, topic and partition a manifest key names.
func badPartition(layout archive.Layout, key string) (cluster, topic string, partition int32, ok bool) {
	k, ok := archive.ParseKey(layout, key)
	if !ok || k.Topic == "" {
		return "", "", 0, false
	}
	return k.Cluster, k.Topic, k.Partition, true
}

// lsLost is a gap marker: a segment Kafka deleted before the agent could
// archive it.
type lsLost struct {
	Broker     int32     `json:"broker_id"`
	TopicID    string    `json:"topic_id"`
	BaseOffset int64     `json:"base_offset"`
	NextBase   int64     `json:"next_segment_base"`
	Bytes      int64     `json:"bytes"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
	Key        string    `json:"key"`
}

// lsDiverged is a divergence report: broker Broker's replica of the
// segment at BaseOffset differs from the copy ArchivedBroker archived.
type lsDiverged struct {
	Broker         int32     `json:"broker_id"`
	BaseOffset     int64     `json:"base_offset"`
	Bytes          int64     `json:"bytes"`
	ArchivedBroker int32     `json:"archived_broker_id"`
	ManifestKey    string    `json:"manifest_key"`
	FirstDiffStart int64     `json:"first_diff_start"`
	FirstDiffEnd   int64     `json:"first_diff_end"`
	DetectedAt     time.Time `json:"detected_at"`
	Key            string    `json:"key"`
	topic          string
	partition      int32
}

// divergenceReports reads the divergence reports of a cluster the catalog
// lists, by partition ("topic/partition"); unreadable or malformed ones are
// reported on w and skipped.
func divergenceReports(ctx context.Context, b uploader.Bucket, cat *archive.Catalog, cluster string, topics *regexp.Regexp, w io.Writer) map[string][]lsDiverged {
	out := map[string][]lsDiverged{}
	for _, e := range cat.Divergences {
		key, k := e.Object.Key, e.Key
		if k.Cluster != cluster || topics != nil && !topics.MatchString(k.Topic) {
			continue
		}
		data, err := uploader.ReadAll(ctx, b, key, 1<<20)
		if err != nil {
			fmt.Fprintf(w, "segvault: divergence report %s: %v\n", key, err)
			continue
		}
		d, err := archive.DecodeDivergenceReport(key, data)
		if err != nil {
			fmt.Fprintf(w, "segvault: %v\n", err)
			continue
		}
		if d.Topic != k.Topic || d.Partition != k.Partition || d.BaseOffset != k.BaseOffset || d.BrokerID != k.Broker {
			fmt.Fprintf(w, "segvault: divergence report %s: names broker %d, %s-%d at %d, not what its key says\n", key, d.BrokerID, d.Topic, d.Partition, d.BaseOffset)
			continue
		}
		pk := fmt.Sprintf("%s/%d", d.Topic, d.Partition)
		out[pk] = append(out[pk], lsDiverged{Broker: d.BrokerID, BaseOffset: d.BaseOffset, Bytes: d.Bytes, ArchivedBroker: d.ArchivedBroker,
			ManifestKey: d.ManifestKey, FirstDiffStart: d.FirstDiffStart, FirstDiffEnd: d.FirstDiffEnd, DetectedAt: d.DetectedAt, Key: key, topic: d.Topic, partition: d.Partition})
	}
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool {
			return l[i].BaseOffset < l[j].BaseOffset || l[i].BaseOffset == l[j].BaseOffset && l[i].Broker < l[j].Broker
		})
	}
	return out
}

// gapMarkers reads every gap marker of a cluster the catalog lists, by
// partition ("topic/partition"). Markers that are unreadable or of an
// unknown format are reported on w and skipped.
func gapMarkers(ctx context.Context, b uploader.Bucket, cat *archive.Catalog, cluster string, topics *regexp.Regexp, w io.Writer) (map[string][]lsLost, map[string]archive.GapMarker, error) {
	out := map[string][]lsLost{}
	first := map[string]archive.GapMarker{}
	for _, e := range cat.Gaps {
		key, k := e.Object.Key, e.Key
		if k.Cluster != cluster || topics != nil && !topics.MatchString(k.Topic) {
			continue
		}
		data, err := uploader.ReadAll(ctx, b, key, 1<<20)
		if err != nil {
			fmt.Fprintf(w, "segvault: gap marker %s: %v\n", key, err)
			continue
		}
		g, err := archive.DecodeGapMarker(key, data)
		if err != nil {
			fmt.Fprintf(w, "segvault: %v\n", err)
			continue
		}
		if g.Topic != k.Topic || g.Partition != k.Partition {
			fmt.Fprintf(w, "segvault: gap marker %s: names %s-%d, not the partition of its key\n", key, g.Topic, g.Partition)
			continue
		}
		pk := fmt.Sprintf("%s/%d", g.Topic, g.Partition)
		if _, ok := first[pk]; !ok {
			first[pk] = *g
		}
		out[pk] = append(out[pk], lsLost{Broker: g.BrokerID, TopicID: g.TopicID, BaseOffset: g.BaseOffset, NextBase: g.NextBase,
			Bytes: g.Bytes, Reason: g.Reason, At: g.At, Key: key})
	}
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool {
			return l[i].BaseOffset < l[j].BaseOffset || l[i].BaseOffset == l[j].BaseOffset && l[i].Broker < l[j].Broker
		})
	}
	return out, first, nil
}

func runLs(c *cli.Context) error {
	ctx := c.Context
	b, layout, err := openExistingStore(ctx, c)
	if err != nil {
		return err
	}
	sel := restore.Selection{Cluster: c.String("cluster"), Broker: -1, Metadata: true}
	src := &lsSource{Source: restore.NewSource(b, archive.DecodeOptions{}), data: map[string][]byte{}, bad: map[string]error{}}
	cat, err := archive.ListAll(ctx, b, layout)
	if err != nil {
		return err
	}
	if err := src.prefetch(ctx, cat); err != nil {
		return err
	}
	clusters, err := restore.Clusters(ctx, src, layout)
	if err != nil {
		return err
	}
	if len(clusters) == 0 && len(src.bad) == 0 && !c.Bool("allow-empty") {
		// An empty table for a mistyped --prefix would read as "nothing
		// archived" when the archive is somewhere else.
		return &exitError{code: exitFailure, err: fmt.Errorf("the archive %s holds nothing under %q or %q (wrong --bucket or --prefix?); --allow-empty accepts an empty archive", b.String(), layout.Root(), layout.RootV2())}
	}
	var topics *regexp.Regexp
	if t := c.String("topic"); t != "" {
		if topics, err = compileRegexp("topic", t); err != nil {
			return err
		}
	}
	owners := lsOwners(src, cat)
	out := []lsPartition{}
	for _, cl := range clusters {
		if sel.Cluster != "" && cl != sel.Cluster {
			continue
		}
		s := sel
		s.Cluster = cl
		s.Topics = topics
		plan, err := src.makePlan(ctx, layout, s)
		if err != nil {
			return err
		}
		lost, lostMeta, err := gapMarkers(ctx, b, cat, cl, s.Topics, c.App.ErrWriter)
		if err != nil {
			return err
		}
		diverged := divergenceReports(ctx, b, cat, cl, s.Topics, c.App.ErrWriter)
		for _, p := range plan.Partitions {
			pk := fmt.Sprintf("%s/%d", p.Topic, p.Partition)
			lp := lsPartition{Cluster: cl, Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, Brokers: p.Brokers,
				Segments: len(p.Segments) + len(p.Snapshots), First: p.FirstOffset, Last: p.LastOffset, Bytes: p.Bytes, Gaps: lsGaps(p.Gaps),
				Lost: dataWins(lost[pk], p.Segments), Older: p.Incarnation, Diverged: diverged[pk], snapshot: -1}
			delete(diverged, pk)
			for _, s := range p.Snapshots {
				lp.snapshot = max(lp.snapshot, s.Manifest.BaseOffset)
				for _, f := range s.Manifest.Files {
					lp.Stored += f.StoredSize()
				}
			}
			delete(lost, pk)
			var ft, lt int64 = -1, -1
			for _, s := range p.Segments {
				sum := s.Manifest.Summary
				if sum.FirstTimestamp >= 0 && (ft < 0 || sum.FirstTimestamp < ft) {
					ft = sum.FirstTimestamp
				}
				if sum.MaxTimestamp > lt {
					lt = sum.MaxTimestamp
				}
				for _, f := range s.Manifest.Files {
					lp.Stored += f.StoredSize()
				}
			}
			if ft >= 0 {
				lp.FirstTime = time.UnixMilli(ft).UTC().Format(time.RFC3339)
			}
			if lt >= 0 {
				lp.LastTime = time.UnixMilli(lt).UTC().Format(time.RFC3339)
			}
			lsTail(&lp, p)
			lp.ArchivedBy = lsArchivedBy(owners[lsOwnerKey(cl, p.TopicID, p.Topic, p.Partition)])
			out = append(out, lp)
		}
		for pk, l := range lost { // partitions whose every archived segment was lost
			g := lostMeta[pk]
			out = append(out, lsPartition{Cluster: cl, Topic: g.Topic, Partition: g.Partition, TopicID: g.TopicID, Brokers: []int32{},
				First: -1, Last: -1, Lost: l, Diverged: diverged[pk]})
			delete(diverged, pk)
		}
		for _, l := range diverged { // the archived copy is gone (pruned): the report stays visible
			out = append(out, lsPartition{Cluster: cl, Topic: l[0].topic, Partition: l[0].partition, Brokers: []int32{},
				First: -1, Last: -1, Diverged: l})
		}
	}
	var badKeys []string
	for key := range src.bad {
		badKeys = append(badKeys, key)
	}
	sort.Strings(badKeys)
	for _, key := range badKeys {
		fmt.Fprintf(c.App.ErrWriter, "segvault: left out: %v\n", lsKeyed(key, src.bad[key]))
		cl, topic, part, ok := badPartition(layout, key)
		if !ok || sel.Cluster != "" && cl != sel.Cluster || topics != nil && !topics.MatchString(topic) {
			continue
		}
		i := 0
		for i < len(out) && (out[i].Cluster != cl || out[i].Topic != topic || out[i].Partition != part) {
			i++
		}
		if i == len(out) {
			out = append(out, lsPartition{Cluster: cl, Topic: topic, Partition: part, Brokers: []int32{}, First: -1, Last: -1})
		}
		out[i].Bad = append(out[i].Bad, lsBad{Key: key, Error: src.bad[key].Error()})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Cluster < b.Cluster || a.Cluster == b.Cluster && (a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition)
	})
	w := c.App.Writer
	var failed error
	if len(badKeys) > 0 {
		failed = &exitError{code: exitFailure, err: fmt.Errorf("%d manifests do not decode or verify and were left out (listed above)", len(badKeys))}
	}
	if c.Bool("json") {
		for i := range out {
			if out[i].ArchivedBy == nil {
				out[i].ArchivedBy = []lsArchived{}
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return failed
	}
	wide, several := c.Bool("wide"), false
	for _, p := range out {
		several = several || p.Cluster != out[0].Cluster
	}
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	row := func(cluster, topicID string, cells ...string) {
		if wide || several {
			fmt.Fprint(tw, cluster, "\t")
		}
		fmt.Fprint(tw, cells[0], "\t")
		if wide {
			fmt.Fprint(tw, topicID, "\t")
		}
		fmt.Fprintln(tw, strings.Join(cells[1:], "\t"))
	}
	row("CLUSTER", "TOPIC ID", "PARTITION", "BROKERS", "ARCHIVED BY", "SEGMENTS", "OFFSETS", "TIME RANGE", "BYTES", "STORED", "GAPS")
	for _, p := range out {
		gaps := gapsText(p)
		if len(p.Bad) > 0 {
			gaps = strings.TrimPrefix(gaps+fmt.Sprintf(",bad-manifests:%d", len(p.Bad)), ",")
		}
		for _, d := range p.Diverged {
			gaps = strings.TrimPrefix(gaps+fmt.Sprintf(",diverged:b%d@%d", d.Broker, d.BaseOffset), ",")
		}
		if gaps == "" {
			gaps = "-"
		}
		row(p.Cluster, p.TopicID, fmt.Sprintf("%s-%d", p.Topic, p.Partition), fmt.Sprint(p.Brokers), lsArchivedText(p.ArchivedBy),
			fmt.Sprint(p.Segments), lsOffsets(p), lsTimes(p), fmt.Sprint(p.Bytes), fmt.Sprint(p.Stored), gaps)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return failed
}

// gapsText renders a partition's GAPS column: the offset ranges missing from
// the archive, "(lost)" when a gap marker explains one, and the lost
// segments no such range covers (another replica's copy filled them, or they
// lie outside the archived range) as "lost:FROM..TO".
func gapsText(p lsPartition) string {
	var out []string
	used := make([]bool, len(p.Lost))
	for _, g := range p.Gaps {
		s := fmt.Sprintf("%d..%d", g.First, g.Last)
		for i, l := range p.Lost {
			if l.BaseOffset <= g.Last && (l.NextBase > g.First || l.NextBase <= l.BaseOffset && l.BaseOffset >= g.First) {
				used[i] = true
				if !strings.HasSuffix(s, "(lost)") {
					s += "(lost)"
				}
			}
		}
		out = append(out, s)
	}
	for i, l := range p.Lost {
		if used[i] {
			continue
		}
		if l.NextBase > l.BaseOffset {
			out = append(out, fmt.Sprintf("lost:%d..%d", l.BaseOffset, l.NextBase-1))
		} else {
			out = append(out, fmt.Sprintf("lost:%d..?", l.BaseOffset))
		}
	}
	return strings.Join(out, ",")
}

// lsOffsets renders the OFFSETS column: "-" when nothing is archived, and
// "empty at N" for archived segments that hold no record (Kafka's empty
// segment at N, as left after retention: first N, last N-1).
func lsOffsets(p lsPartition) string {
	switch {
	case p.Segments == 0:
		return "-"
	case p.First < 0 && p.snapshot >= 0: // KRaft snapshots only
		return fmt.Sprintf("snapshot %d", p.snapshot)
	case p.Last < p.First:
		return fmt.Sprintf("empty at %d", p.First)
	}
	return fmt.Sprintf("%d..%d", p.First, p.Last)
}

// lsTimes renders the TIME RANGE column, the second time without its date
// when both fall on the same day.
func lsTimes(p lsPartition) string {
	if p.Segments == 0 || p.FirstTime == "" && p.LastTime == "" {
		return "-"
	}
	last := p.LastTime
	if d, rest, ok := strings.Cut(p.LastTime, "T"); ok && strings.HasPrefix(p.FirstTime, d+"T") {
		last = rest
	}
	return p.FirstTime + ".." + last
}
