package restore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// Tail captures (issue 15): after the last archived rolled segment of a
// partition, the captured prefix of the broker's active segment becomes the
// restored active segment. Planning turns each chain of captures into one
// planned Segment whose .log record is a v2 FileRecord with every chunk in
// a tail pack (Chunk.Key set), so the rest of restore (fetch, cut, index
// rebuild, side files) treats it as any segment without indexes.

// TailValidation is the Validation of a planned segment made of tail
// captures (SegmentManifest.Validation).
const TailValidation = "tail-capture"

// TailPlan is what the tail captures add to a partition.
type TailPlan struct {
	Broker     int32     // whose captures are used
	Segments   int       // segments restored from captures
	Captures   int       // captures used
	Superseded int       // captures of segments archived since (ignored)
	Unusable   int       // captures of the partition not restorable (other chains, breaks)
	LastOffset int64     // newest restorable offset from captures
	MaxTime    int64     // max timestamp of the captured batches (ms), -1 if unknown
	CapturedAt time.Time // when the newest capture used was read
	Newest     string    // key of the newest tail manifest used
}

// IsTail reports whether s was planned from tail captures.
func (s Segment) IsTail() bool { return s.Manifest != nil && s.Manifest.Validation == TailValidation }

// tailCapture is one decoded capture with where it came from.
type tailCapture struct {
	archive.TailCapture
	key        string // tail manifest key
	packKey    string
	seq        int64
	capturedAt time.Time
	agent      string
	uploadID   string
	broker     int32
}

// tailManifestKey parses <root-v2><cluster>/brokers/<b>/tails/<seq>-<uid>.json.
func tailManifestKey(l archive.Layout, key string) (cluster string, broker int32, seq int64, uid string, ok bool) {
	rest, found := strings.CutPrefix(key, l.RootV2())
	if !found {
		return
	}
	f := strings.Split(rest, "/")
	if len(f) != 5 || f[1] != "brokers" || f[3] != "tails" || !strings.HasSuffix(f[4], ".json") {
		return
	}
	b, err := strconv.ParseInt(f[2], 10, 32)
	if err != nil || b < 0 {
		return
	}
	s, u, found := strings.Cut(strings.TrimSuffix(f[4], ".json"), "-")
	if !found || len(s) != 20 || u == "" {
		return
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return
	}
	return f[0], int32(b), n, u, true
}

// tailClusters lists the clusters whose brokers have tail captures (for
// an archive holding nothing else).
func tailClusters(ctx context.Context, src Source, layout archive.Layout) ([]string, error) {
	seen := map[string]bool{}
	err := src.List(ctx, layout.RootV2(), func(oi uploader.ObjectInfo) error {
		if c, _, _, _, ok := tailManifestKey(layout, oi.Key); ok {
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

// planTails reads the cluster's tail manifests and adds, per admitted
// partition, the captured active segment after the last archived one.
// Captures that fail a check are reported as bad (Plan.Bad with
// LeaveOutBad, else an error naming the object and the check).
func planTails(ctx context.Context, src Source, layout archive.Layout, sel Selection, plan *Plan, concurrency int) error {
	if sel.RolledOnly {
		return nil
	}
	if plan.Cluster == "" {
		cs, err := tailClusters(ctx, src, layout)
		if err != nil {
			return fmt.Errorf("list archive: %w", err)
		}
		if len(cs) > 1 {
			return fmt.Errorf("the archive holds several clusters (%s): choose one with --cluster", strings.Join(cs, ", "))
		}
		if len(cs) == 0 {
			return nil
		}
		plan.Cluster = cs[0]
	}
	var keys []string
	brokers := map[int32]bool{}
	prefix := layout.RootV2() + plan.Cluster + "/brokers/"
	if sel.Broker >= 0 {
		prefix = layout.BrokerPrefixV2(plan.Cluster, sel.Broker) + "tails/"
	}
	err := src.List(ctx, prefix, func(oi uploader.ObjectInfo) error {
		if c, b, _, _, ok := tailManifestKey(layout, oi.Key); ok && c == plan.Cluster && (sel.Broker < 0 || b == sel.Broker) {
			keys = append(keys, oi.Key)
			brokers[b] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list archive: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	for b := range brokers {
		if !containsBroker(plan.Brokers, b) {
			plan.Brokers = append(plan.Brokers, b)
		}
	}
	sort.Slice(plan.Brokers, func(i, j int) bool { return plan.Brokers[i] < plan.Brokers[j] })
	var mu sync.Mutex
	bad := func(key string, err error) error {
		if !sel.LeaveOutBad {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		plan.Bad = append(plan.Bad, BadObject{Key: key, Err: err.Error()})
		return nil
	}
	type pk struct {
		topic string
		p     int32
	}
	caps := map[pk][]tailCapture{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for _, key := range keys {
		g.Go(func() error {
			data, err := src.Get(gctx, key, archive.MaxTailManifestSize)
			if err != nil {
				if errors.Is(err, uploader.ErrNotFound) {
					return nil // pruned since the listing
				}
				return fmt.Errorf("read tail manifest %s: %w", key, err)
			}
			m, err := archive.DecodeTailManifest(key, data)
			if err == nil {
				err = checkTailManifest(layout, key, m)
			}
			if err != nil {
				return bad(key, err)
			}
			for i, c := range m.Captures {
				if c.TopicID == "" {
					c.TopicID = archive.NoTopicID
				}
				if c.Topic == metadataTopic && !sel.Metadata {
					continue
				}
				if !sel.admits(archive.KeyInfo{Cluster: m.ClusterID, Topic: c.Topic, TopicID: c.TopicID, Partition: c.Partition, Broker: m.BrokerID}) {
					continue
				}
				if err := checkTailCapture(key, i, m, c); err != nil {
					if err := bad(key, err); err != nil {
						return err
					}
					continue
				}
				if c.To == c.From {
					continue // nothing new
				}
				mu.Lock()
				caps[pk{c.Topic, c.Partition}] = append(caps[pk{c.Topic, c.Partition}], tailCapture{TailCapture: c, key: key, packKey: m.PackKey,
					seq: m.Seq, capturedAt: m.CapturedAt, agent: m.Agent, uploadID: m.UploadID, broker: m.BrokerID})
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	byPart := map[pk]*PartitionPlan{}
	for _, pp := range plan.Partitions {
		byPart[pk{pp.Topic, pp.Partition}] = pp
	}
	for k, cs := range caps {
		pp := byPart[k]
		if pp == nil {
			pp = &PartitionPlan{Topic: k.topic, Partition: k.p, FirstOffset: -1, LastOffset: -1, EmptyAt: -1}
			if addTailPartition(pp, cs, plan.Cluster, sel) {
				plan.Partitions = append(plan.Partitions, pp)
				byPart[k] = pp
			}
			continue
		}
		addTailPartition(pp, cs, plan.Cluster, sel)
	}
	return nil
}

func containsBroker(bs []int32, b int32) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// checkTailManifest checks that a tail manifest is the object its key names.
// A manifest without captures (the agent's abandon marker for a capture
// interrupted before its commit) commits nothing and names no pack.
func checkTailManifest(layout archive.Layout, key string, m *archive.TailManifest) error {
	c, b, seq, uid, _ := tailManifestKey(layout, key)
	if m.ClusterID != c || m.BrokerID != b || m.Seq != seq || m.UploadID != uid {
		return fmt.Errorf("tail manifest %s: names cluster %s broker %d seq %d upload %s, not the object of its key", key, m.ClusterID, m.BrokerID, m.Seq, m.UploadID)
	}
	if len(m.Captures) == 0 {
		return nil
	}
	if want := layout.TailPackKey(c, b, seq, uid); m.PackKey != want {
		return fmt.Errorf("tail manifest %s: pack key %q is not %q", key, m.PackKey, want)
	}
	if m.PackSize < 0 {
		return fmt.Errorf("tail manifest %s: negative pack size %d", key, m.PackSize)
	}
	return nil
}

// maxSegmentBytes bounds a captured segment (Kafka's segment.bytes is an int).
const maxSegmentBytes = 1<<31 - 1

// checkTailCapture validates every name, range and key of one capture
// before any of them is used: a hostile capture must not steer writes or
// reads.
func checkTailCapture(key string, i int, m *archive.TailManifest, c archive.TailCapture) error {
	bad := func(check, format string, a ...any) error {
		return fmt.Errorf("tail manifest %s: capture %d (%s-%d): %s: %s", key, i, c.Topic, c.Partition, check, fmt.Sprintf(format, a...))
	}
	if err := segment.ValidateTopic(c.Topic); err != nil {
		return bad("topic name", "%v", err)
	}
	if c.Partition < 0 {
		return bad("partition", "negative partition %d", c.Partition)
	}
	if c.TopicID != archive.NoTopicID && c.TopicID != "" {
		if err := index.ValidateTopicID(c.TopicID); err != nil {
			return bad("topic id", "%v", err)
		}
	}
	if c.SegmentBase < 0 || c.To > maxSegmentBytes {
		return bad("range", "segment base %d, bytes [%d, %d): past what a segment can hold", c.SegmentBase, c.From, c.To)
	}
	if c.To > c.From {
		if c.FirstOffset < c.SegmentBase || c.LastOffset < c.FirstOffset || c.LastOffset-c.SegmentBase > 1<<31-1 {
			return bad("offsets", "offsets %d..%d outside segment %d", c.FirstOffset, c.LastOffset, c.SegmentBase)
		}
	}
	for _, s := range []string{c.SHA256, c.PrevSHA256} {
		if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
			return bad("sha256", "%q is not a SHA-256", s)
		}
	}
	for j, ch := range c.Chunks {
		if ch.Key != "" && ch.Key != m.PackKey {
			return bad("chunk key", "chunk %d is stored in %q, not in the capture's pack", j, ch.Key)
		}
		if ch.Offset+ch.StoredSize > m.PackSize || ch.Offset+ch.StoredSize < ch.Offset {
			return bad("chunk range", "chunk %d at bytes %d..%d runs past the pack's %d bytes", j, ch.Offset, ch.Offset+ch.StoredSize, m.PackSize)
		}
	}
	return nil
}

// newer orders captures: higher seq, then later capture time (a broker's
// sequence is per broker; CapturedAt breaks ties across restarts).
func newer(a, b tailCapture) bool {
	if a.broker == b.broker && a.seq != b.seq {
		return a.seq > b.seq
	}
	if !a.capturedAt.Equal(b.capturedAt) {
		return a.capturedAt.After(b.capturedAt)
	}
	return a.seq > b.seq
}

// tailChain is one segment's chain of captures, From 0 first.
type tailChain struct {
	base  int64
	caps  []tailCapture
	broke string // why the newest capture's chain could not be followed to 0 ("" when it could)
	lost  tailCapture
}

// chainFor picks, among the captures of one segment (one broker), the chain
// ending in the newest capture and follows it back to From 0. A break keeps
// the longest valid prefix: the newest older chain that reaches 0 and ends
// at or before the break, never pieces of two chains.
func chainFor(base int64, cs []tailCapture) tailChain {
	sort.Slice(cs, func(i, j int) bool { return newer(cs[i], cs[j]) })
	bySHA := map[string]tailCapture{}
	for i := len(cs) - 1; i >= 0; i-- { // the newest capture of a range wins
		bySHA[cs[i].SHA256] = cs[i]
	}
	follow := func(head tailCapture) ([]tailCapture, *tailCapture) {
		chain := []tailCapture{head}
		for c := head; c.From > 0; {
			p, ok := bySHA[c.PrevSHA256]
			if !ok || p.To != c.From || len(chain) > len(cs) {
				return nil, &c
			}
			chain = append(chain, p)
			c = p
		}
		for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
			chain[i], chain[j] = chain[j], chain[i]
		}
		return chain, nil
	}
	ch := tailChain{base: base}
	chain, brk := follow(cs[0])
	if brk == nil {
		ch.caps = chain
		return ch
	}
	ch.lost = cs[0]
	ch.broke = fmt.Sprintf("tail capture chain break: capture of bytes [%d, %d) in %s continues bytes whose sha256 %s no capture of segment %d has",
		brk.From, brk.To, brk.key, brk.PrevSHA256, base)
	for _, c := range cs[1:] {
		if !newer(*brk, c) || c.To > brk.From {
			continue
		}
		if chain, b := follow(c); b == nil {
			ch.caps = chain
			return ch
		}
	}
	return ch
}

// addTailPartition adds the captured segments of one partition to pp and
// reports whether it added anything.
func addTailPartition(pp *PartitionPlan, cs []tailCapture, cluster string, sel Selection) bool {
	tp := &TailPlan{Broker: -1, LastOffset: -1, MaxTime: -1}
	// Incarnation: the archived one; a partition with only captures takes
	// the topic id of its newest capture, and so does one whose topic was
	// deleted and re-created since its last archived segment (the newest
	// incarnation, unless one was selected).
	newest := cs[0]
	for _, c := range cs[1:] {
		if newer(c, newest) {
			newest = c
		}
	}
	topicID := pp.TopicID
	if len(pp.Segments) == 0 {
		topicID = newest.TopicID
	} else if sel.TopicID == "" && newest.TopicID != pp.TopicID && newest.capturedAt.After(newestArchived(pp)) {
		*pp = PartitionPlan{Topic: pp.Topic, Partition: pp.Partition, TopicID: newest.TopicID, FirstOffset: -1, LastOffset: -1, EmptyAt: -1,
			Incarnation: pp.Incarnation + 1}
		topicID = newest.TopicID
	}
	n := int64(-1)
	if len(pp.Segments) > 0 {
		n = pp.Segments[len(pp.Segments)-1].Manifest.NextSegmentBase
	}
	if n >= 0 {
		n = spliceOverlap(pp, cs, topicID, n)
	}
	var usable []tailCapture
	for _, c := range cs {
		switch {
		case c.TopicID != topicID:
			tp.Unusable++
		case n >= 0 && c.SegmentBase < n:
			tp.Superseded++ // that segment rolled and was archived
		default:
			usable = append(usable, c)
		}
	}
	if len(usable) == 0 {
		if tp.Superseded+tp.Unusable > 0 {
			pp.Tail = tp
		}
		return false
	}
	// Broker: the selected one (admits filtered), else one whose captures
	// continue the archived segments (a segment at their end: replicas
	// roll at different offsets); among them the one whose newest capture
	// is in the highest leader epoch, then reaches the highest offset (in
	// one epoch replicas hold prefixes of the leader's log: a lagging
	// follower captured last must not win), then the newest.
	contiguous := map[int32]bool{}
	heads := map[int32]tailCapture{}
	for _, c := range usable {
		contiguous[c.broker] = contiguous[c.broker] || c.SegmentBase == n
		if h, ok := heads[c.broker]; !ok || newer(c, h) {
			heads[c.broker] = c
		}
	}
	better := func(a, b tailCapture) bool {
		switch {
		case contiguous[a.broker] != contiguous[b.broker]:
			return contiguous[a.broker]
		case a.LastEpoch != b.LastEpoch:
			return a.LastEpoch > b.LastEpoch
		case a.LastOffset != b.LastOffset:
			return a.LastOffset > b.LastOffset
		case newer(a, b) != newer(b, a):
			return newer(a, b)
		}
		return a.broker < b.broker
	}
	newest = tailCapture{broker: -1}
	for _, h := range heads {
		if newest.broker < 0 || better(h, newest) {
			newest = h
		}
	}
	tp.Broker = newest.broker
	byBase := map[int64][]tailCapture{}
	var bases []int64
	for _, c := range usable {
		if c.broker != tp.Broker {
			tp.Unusable++
			continue
		}
		if byBase[c.SegmentBase] == nil {
			bases = append(bases, c.SegmentBase)
		}
		byBase[c.SegmentBase] = append(byBase[c.SegmentBase], c)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if n < 0 {
		n = bases[0]
	}
	added := false
	for _, base := range bases {
		group := byBase[base]
		if base < n {
			tp.Unusable += len(group) // below what an earlier captured segment reaches
			continue
		}
		ch := chainFor(base, group)
		tp.Unusable += len(group) - len(ch.caps)
		if len(ch.caps) == 0 {
			if ch.broke != "" {
				pp.Gaps = append(pp.Gaps, Gap{From: max(n, base), To: ch.lost.LastOffset + 1, Reason: ch.broke})
			}
			continue
		}
		if base > n && n >= 0 && (len(pp.Segments) > 0 || added) {
			pp.Gaps = append(pp.Gaps, Gap{From: n, To: base, Reason: "not captured: the segment rolled before its last bytes were captured, and it is not archived"})
		}
		s := tailSegment(cluster, pp, topicID, ch)
		if pp.TopicID == "" || len(pp.Segments) == 0 {
			pp.TopicID = topicID
		}
		pp.Segments = append(pp.Segments, s)
		sum := s.Manifest.Summary
		if pp.FirstOffset < 0 {
			pp.FirstOffset = sum.FirstOffset
		}
		pp.LastOffset = sum.LastOffset
		pp.Bytes += s.Manifest.Files[0].Size
		if !containsBroker(pp.Brokers, tp.Broker) {
			pp.Brokers = append(pp.Brokers, tp.Broker)
			sort.Slice(pp.Brokers, func(i, j int) bool { return pp.Brokers[i] < pp.Brokers[j] })
		}
		last := ch.caps[len(ch.caps)-1]
		tp.Segments++
		tp.Captures += len(ch.caps)
		tp.LastOffset = last.LastOffset
		for _, c := range ch.caps {
			tp.MaxTime = max(tp.MaxTime, c.MaxTimestamp)
			if c.capturedAt.After(tp.CapturedAt) {
				tp.CapturedAt, tp.Newest = c.capturedAt, c.key
			}
		}
		if ch.broke != "" {
			pp.Gaps = append(pp.Gaps, Gap{From: last.LastOffset + 1, To: max(ch.lost.LastOffset+1, last.LastOffset+2), Reason: ch.broke})
		}
		n = s.Manifest.NextSegmentBase
		added = true
	}
	sort.Slice(pp.Gaps, func(i, j int) bool { return pp.Gaps[i].From < pp.Gaps[j].From })
	if added {
		pp.EmptyAt = -1
	}
	pp.Tail = tp
	return added
}

// tailSegment is the planned segment of one chain: a v2 manifest whose
// .log record has every chunk in a tail pack and the chain's final SHA-256.
func tailSegment(cluster string, pp *PartitionPlan, topicID string, ch tailChain) Segment {
	first, last := ch.caps[0], ch.caps[len(ch.caps)-1]
	var chunks []archive.Chunk
	maxTS := int64(-1)
	var ps *archive.PartitionState
	var psAt time.Time
	head := last
	for _, c := range ch.caps {
		for _, k := range c.Chunks {
			if k.Key == "" {
				k.Key = c.packKey
			}
			chunks = append(chunks, k)
		}
		maxTS = max(maxTS, c.MaxTimestamp)
		if c.PartitionState != nil && !c.capturedAt.Before(psAt) {
			cp := *c.PartitionState
			if cp.CapturedAt.IsZero() {
				cp.CapturedAt = c.capturedAt
			}
			ps, psAt = &cp, c.capturedAt
		}
		if c.capturedAt.After(head.capturedAt) {
			head = c
		}
	}
	end := last.LastOffset + 1
	sum := &segment.Summary{BaseOffset: ch.base, FirstOffset: first.FirstOffset, LastOffset: last.LastOffset, Size: last.To,
		FirstTimestamp: -1, MaxTimestamp: maxTS, MaxTimestampOffset: -1}
	var epochs []index.EpochEntry
	if ps != nil {
		if e, err := index.ParseLeaderEpochCheckpoint(index.LeaderEpochCheckpointFile, ps.LeaderEpochCheckpoint); err == nil {
			// The checkpoint was read with the files: it may name epochs
			// of batches appended after the captured bytes; an epoch
			// starting at the captured end is the broker's own state.
			for _, x := range e {
				if x.StartOffset <= end {
					epochs = append(epochs, x)
				}
			}
			if len(epochs) < len(e) {
				ps.LeaderEpochCheckpoint = index.FormatLeaderEpochCheckpoint(epochs)
			}
		}
	}
	for i, e := range epochs {
		to := end
		if i+1 < len(epochs) {
			to = epochs[i+1].StartOffset
		}
		if to > ch.base && e.StartOffset < to {
			sum.LeaderEpochs = append(sum.LeaderEpochs, segment.EpochStart{Epoch: e.Epoch, StartOffset: max(e.StartOffset, ch.base)})
		}
	}
	if len(sum.LeaderEpochs) == 0 {
		// No checkpoint captured: each capture's last epoch from its
		// first offset (exact where epochs change between captures;
		// otherwise an epoch starts at most one capture early), never
		// the last epoch over the whole segment.
		for _, c := range ch.caps {
			if n := len(sum.LeaderEpochs); c.LastEpoch >= 0 && (n == 0 || c.LastEpoch > sum.LeaderEpochs[n-1].Epoch) {
				sum.LeaderEpochs = append(sum.LeaderEpochs, segment.EpochStart{Epoch: c.LastEpoch, StartOffset: c.FirstOffset})
			}
		}
	}
	name := segment.FormatName(ch.base, segment.KindLog)
	m := &archive.SegmentManifest{Format: archive.SegmentManifestFormat, Version: archive.ManifestVersionV2, ClusterID: cluster,
		BrokerID: head.broker, Topic: pp.Topic, Partition: pp.Partition, TopicID: topicID, Kind: archive.KindSegment,
		BaseOffset: ch.base, NextSegmentBase: end, ContentID: last.SHA256[:12], UploadID: head.uploadID,
		SourceModTime: head.capturedAt, Agent: head.agent, Validation: TailValidation,
		Files: []archive.FileRecord{{Name: name, Size: last.To, SHA256: last.SHA256, ModTime: head.capturedAt,
			DataKey: last.key, Chunks: chunks}},
		Summary: archive.SummaryFromSegment(sum), PartitionState: ps}
	return Segment{Manifest: m, Key: last.key}
}

// newestArchived is when the newest archived segment of pp was written.
func newestArchived(pp *PartitionPlan) time.Time {
	var t time.Time
	for _, s := range pp.Segments {
		for _, at := range []time.Time{s.Manifest.CreatedAt, s.Manifest.SourceModTime} {
			if at.After(t) {
				t = at
			}
		}
	}
	return t
}

// spliceOverlap handles a replica whose captured active segment starts
// below the end n of the archived segments and reaches past it (replicas
// roll at different offsets: the archived segments may come from a replica
// that stopped, the captures from the one that kept the partition). Such
// captures are not superseded: they hold offsets the archive lacks. The
// archived segments from the captured segment's base on are dropped so the
// captured segment follows the archived ones; when its base falls inside
// an archived segment the offsets past n are reported as a gap (restore
// --broker of that replica brings them back). It returns the new end of
// the archived segments.
func spliceOverlap(pp *PartitionPlan, cs []tailCapture, topicID string, n int64) int64 {
	type bk struct {
		broker int32
		base   int64
	}
	groups := map[bk][]tailCapture{}
	for _, c := range cs {
		if c.TopicID == topicID && c.SegmentBase < n {
			groups[bk{c.broker, c.SegmentBase}] = append(groups[bk{c.broker, c.SegmentBase}], c)
		}
	}
	// Only a log at least as new as what continues the archive: ref is
	// the highest leader epoch of the archived segments and of the
	// captures from n on. A lower epoch is a replica that diverged (an
	// unclean election truncated it elsewhere); at the same epoch the logs
	// are prefixes of one leader's, and the longer one wins; a higher
	// epoch is the newer leader's log, even when shorter (a truncation
	// across a roll: the broker deleted its later segments and rewrote
	// the one it kept, which became its active segment again).
	ref, refEnd := int32(-1), n
	for _, s := range pp.Segments {
		if s.Manifest.Summary != nil {
			for _, e := range s.Manifest.Summary.LeaderEpochs {
				ref = max(ref, e.Epoch)
			}
		}
	}
	for _, c := range cs {
		if c.TopicID == topicID && c.SegmentBase >= n && c.To > c.From {
			ref, refEnd = max(ref, c.LastEpoch), max(refEnd, c.LastOffset+1)
		}
	}
	var best tailChain
	var bestEnd int64
	for k, g := range groups {
		ch := chainFor(k.base, append([]tailCapture(nil), g...))
		if len(ch.caps) == 0 {
			continue
		}
		last := ch.caps[len(ch.caps)-1]
		end := last.LastOffset + 1
		if last.LastEpoch < ref || last.LastEpoch == ref && end <= refEnd || ref < 0 && end <= n {
			continue
		}
		if len(best.caps) > 0 {
			b := best.caps[len(best.caps)-1]
			if last.LastEpoch != b.LastEpoch && last.LastEpoch < b.LastEpoch || last.LastEpoch == b.LastEpoch && (end < bestEnd || end == bestEnd && !newer(last, b)) {
				continue
			}
		}
		best, bestEnd = ch, end
	}
	if len(best.caps) == 0 {
		return n
	}
	last := best.caps[len(best.caps)-1]
	i := sort.Search(len(pp.Segments), func(i int) bool { return pp.Segments[i].Manifest.BaseOffset >= best.base })
	if i > 0 && pp.Segments[i-1].Manifest.NextSegmentBase > best.base {
		if bestEnd <= n {
			return n // a newer, shorter log inside an archived segment: restore --broker of that replica
		}
		pp.Gaps = append(pp.Gaps, Gap{From: n, To: bestEnd, Reason: fmt.Sprintf(
			"captured only by broker %d (%s), in its active segment starting at offset %d, inside an archived segment of another replica: restore with --broker %d for them",
			last.broker, last.key, best.base, last.broker)})
		return n
	}
	for _, s := range pp.Segments[i:] {
		for _, f := range s.Manifest.Files {
			pp.Bytes -= f.Size
		}
	}
	pp.Segments = pp.Segments[:i]
	gaps := pp.Gaps[:0]
	for _, g := range pp.Gaps {
		if g.From < best.base {
			g.To = min(g.To, best.base)
			gaps = append(gaps, g)
		}
	}
	pp.Gaps = gaps
	pp.FirstOffset, pp.LastOffset, pp.Brokers = -1, -1, nil
	for j, s := range pp.Segments {
		if j == 0 {
			pp.FirstOffset = s.Manifest.BaseOffset
		}
		if s.Manifest.Summary.LastOffset >= 0 {
			pp.LastOffset = s.Manifest.Summary.LastOffset
		}
	}
	for _, s := range append(append([]Segment(nil), pp.Segments...), pp.Snapshots...) {
		if !containsBroker(pp.Brokers, s.Manifest.BrokerID) {
			pp.Brokers = append(pp.Brokers, s.Manifest.BrokerID)
		}
	}
	sort.Slice(pp.Brokers, func(i, j int) bool { return pp.Brokers[i] < pp.Brokers[j] })
	return best.base
}
