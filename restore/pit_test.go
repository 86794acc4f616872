package restore_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
)

type rec struct {
	offset     int64
	key, value string
}

// readCommitted reads a partition dir as a read_committed consumer would:
// transactional records appear when their COMMIT marker does, aborted and
// still-open transactions never. Batches after the first one that fails
// keep(b) are ignored (the cut of a point-in-time restore, applied to the
// original log).
func readCommitted(t *testing.T, dir string, keep func(b *segment.Batch) bool) []rec {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	sort.Strings(logs)
	var out []rec
	open := map[int64][]rec{}
	for _, p := range logs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		n, _ := segment.ParseFileName(filepath.Base(p))
		r := segment.NewReader(f, fi.Size(), p, segment.ReaderOptions{BaseOffset: n.BaseOffset})
		for r.Next() {
			b := r.Batch()
			if keep != nil && !keep(b) {
				f.Close()
				sort.Slice(out, func(i, j int) bool { return out[i].offset < out[j].offset })
				return out
			}
			recs, err := r.Records()
			if err != nil {
				t.Fatal(err)
			}
			if b.Control() {
				typ, err := segment.ParseControlKey(recs[0].Key)
				if err != nil {
					t.Fatal(err)
				}
				if typ == segment.ControlCommit {
					out = append(out, open[b.ProducerID]...)
				}
				delete(open, b.ProducerID)
				continue
			}
			for _, x := range recs {
				rc := rec{x.Offset, string(x.Key), string(x.Value)}
				if b.Transactional() {
					open[b.ProducerID] = append(open[b.ProducerID], rc)
				} else {
					out = append(out, rc)
				}
			}
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].offset < out[j].offset })
	return out
}

// TestPointInTimeTransactional cuts a transactional partition (two
// producers, interleaved transactions, every third aborted) at random
// offsets and times. The restored partition, read committed, holds exactly
// what the original held up to the cut, minus the transactions still open
// there (restore aborts them), record by record; every record is one the
// producer sent and not an aborted one; and the indexes verify.
func TestPointInTimeTransactional(t *testing.T) {
	ctx := context.Background()
	_, b, res := archiveWith(t, brokersim.Config{NodeID: 1, SegmentBytes: 24 << 10, Seed: 4,
		Topics: []brokersim.TopicSpec{{Name: "pay", Codec: "none", Transactional: true, Producers: 2, AbortEvery: 3, TxnBatches: 2, Records: 6000, BatchRecords: 20}}})
	src := res.Dir
	p := res.Partition("pay", 0)
	produced := map[int64]brokersim.Record{}
	for _, r := range p.Records {
		produced[r.Offset] = r
	}
	orig := filepath.Join(src, "pay-0")
	lastArchived := p.Segments[len(p.Segments)-1] - 1 // the active segment is not archived
	var times []int64
	for _, r := range p.Records {
		if r.Offset <= lastArchived {
			times = append(times, r.Timestamp)
		}
	}
	rng := rand.New(rand.NewSource(1))
	type cut struct {
		offset, time int64
	}
	var cuts []cut
	for i := 0; i < 6; i++ {
		cuts = append(cuts, cut{offset: rng.Int63n(lastArchived + 1), time: -1})
	}
	for i := 0; i < 4; i++ {
		cuts = append(cuts, cut{offset: -1, time: times[rng.Intn(len(times))]})
	}
	markers := 0
	for _, c := range cuts {
		name := fmt.Sprintf("offset=%d,time=%d", c.offset, c.time)
		target := filepath.Join(t.TempDir(), "restored")
		src := restore.NewSource(b, archive.DecodeOptions{})
		plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := restore.Run(ctx, src, plan, restore.Options{Targets: []string{target}, ToOffset: c.offset, ToTime: c.time, NodeID: -1})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		markers += rep.AbortMarkers
		keep := func(bt *segment.Batch) bool {
			if bt.LastOffset() > lastArchived {
				return false
			}
			if c.offset >= 0 && bt.LastOffset() > c.offset {
				return false
			}
			return c.time < 0 || bt.MaxTimestamp <= c.time
		}
		want := readCommitted(t, orig, keep)
		got := readCommitted(t, filepath.Join(target, "pay-0"), nil)
		if len(got) != len(want) {
			t.Errorf("%s: %d committed records restored, want %d", name, len(got), len(want))
		}
		for i := 0; i < len(got) && i < len(want); i++ {
			if got[i] != want[i] {
				t.Errorf("%s: record %d: got %+v, want %+v", name, i, got[i], want[i])
				break
			}
		}
		for _, g := range got {
			pr, ok := produced[g.offset]
			if !ok || pr.Aborted || string(pr.Key) != g.key || string(pr.Value) != g.value {
				t.Errorf("%s: restored offset %d is not a committed produced record", name, g.offset)
				break
			}
			if c.offset >= 0 && g.offset > c.offset {
				t.Errorf("%s: offset %d beyond the cut", name, g.offset)
			}
		}
		// The cut segment's rebuilt indexes verify against it.
		logs, _ := filepath.Glob(filepath.Join(target, "pay-0", "*.log"))
		for _, l := range logs {
			verifyIndexes(t, l)
		}
	}
	if markers == 0 {
		t.Error("no cut landed inside an open transaction: the test does not exercise ABORT markers")
	}
	t.Logf("%d cuts checked record by record; %d ABORT markers written for transactions open at a cut", len(cuts), markers)
}

func verifyIndexes(t *testing.T, logPath string) {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	n, _ := segment.ParseFileName(filepath.Base(logPath))
	read := func(ext string) []byte {
		d, err := os.ReadFile(logPath[:len(logPath)-4] + ext)
		if err != nil {
			return nil
		}
		return d
	}
	rep, err := index.VerifySegment(f, fi.Size(), logPath, index.SideFiles{Index: read(".index"), TimeIndex: read(".timeindex"), TxnIndex: read(".txnindex")},
		index.VerifyOptions{BaseOffset: n.BaseOffset})
	if err != nil || rep.Corrupt() {
		t.Errorf("%s: indexes do not verify: %v", logPath, err)
	}
}
