package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// h29Arch builds a v1 archive in a store with chosen capture times.
type h29Arch struct {
	t      testing.TB
	b      uploader.Bucket
	l      Layout
	cl     string
	seq    int
	dir    string // local store root ("" for S3)
	putOpt uploader.PutOptions
}

func h29NewLocal(t testing.TB) *h29Arch {
	dir := t.TempDir()
	b, err := uploader.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &h29Arch{t: t, b: b, l: NewLayout(""), cl: "c1", dir: dir}
}

func (a *h29Arch) put(key string, data []byte) {
	a.t.Helper()
	if err := a.b.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), a.putOpt); err != nil {
		a.t.Fatalf("create %s: %v", key, err)
	}
}

// version archives topic-p base [base, next) of broker at created; it
// returns the manifest key and the data key.
func (a *h29Arch) version(topic string, p int32, broker int32, base, next int64, created time.Time) (string, string) {
	a.t.Helper()
	a.seq++
	ref := SegmentRef{Cluster: a.cl, Topic: topic, Partition: p, TopicID: NoTopicID, BaseOffset: base, Broker: broker, ContentID: fmt.Sprintf("%012x", a.seq)}
	name := segment.FormatName(base, segment.KindLog)
	dk := a.l.DataKey(ref, name, "")
	data := bytes.Repeat([]byte{byte(a.seq)}, 1000+a.seq)
	a.put(dk, data)
	m := SegmentManifest{Format: SegmentManifestFormat, Version: ManifestVersion, ClusterID: a.cl, BrokerID: broker, Topic: topic, Partition: p,
		TopicID: NoTopicID, Kind: KindSegment, BaseOffset: base, NextSegmentBase: next, ContentID: ref.ContentID, CreatedAt: created,
		Files:   []FileRecord{{Name: name, Size: int64(len(data)), Object: StoredObject{Key: dk, Size: int64(len(data)), Compression: CompressionNone}}},
		Summary: &SegmentSummary{BaseOffset: base, FirstOffset: base, LastOffset: next - 1, MaxTimestamp: created.UnixMilli(), FirstTimestamp: created.UnixMilli() - 1000}}
	js, _ := json.Marshal(m)
	mk := a.l.ManifestKey(ref)
	a.put(mk, js)
	return mk, dk
}

func (a *h29Arch) gap(topic string, p int32, broker int32, base, next int64, at time.Time) string {
	ref := SegmentRef{Cluster: a.cl, Topic: topic, Partition: p, TopicID: NoTopicID, BaseOffset: base, Broker: broker}
	g := GapMarker{Format: GapMarkerFormat, Version: ManifestVersion, ClusterID: a.cl, BrokerID: broker, Topic: topic, Partition: p, TopicID: NoTopicID, BaseOffset: base, NextBase: next, Reason: "test", At: at}
	js, _ := json.Marshal(g)
	k := a.l.GapKey(ref)
	a.put(k, js)
	return k
}

func (a *h29Arch) logdir(broker int32, dir string, at time.Time) string {
	m := LogDirManifest{Format: LogDirManifestFormat, Version: ManifestVersion, ClusterID: a.cl, BrokerID: broker, LogDir: "/data/" + dir, CapturedAt: at}
	js, _ := json.Marshal(m)
	k := a.l.LogDirKey(a.cl, broker, dir, at)
	a.put(k, js)
	return k
}

func (a *h29Arch) age(key string, mt time.Time) {
	a.t.Helper()
	if err := os.Chtimes(filepath.Join(a.dir, filepath.FromSlash(key)), mt, mt); err != nil {
		a.t.Fatal(err)
	}
}

func (a *h29Arch) keys() map[string]bool {
	a.t.Helper()
	out := map[string]bool{}
	err := a.b.List(context.Background(), "", func(oi uploader.ObjectInfo) error { out[oi.Key] = true; return nil })
	if err != nil {
		a.t.Fatal(err)
	}
	return out
}

func (a *h29Arch) prune(o PruneOptions) *PruneReport {
	a.t.Helper()
	rep, err := Prune(context.Background(), a.b, a.l, "", o)
	if err != nil {
		a.t.Fatalf("prune: %v", err)
	}
	if len(rep.Failures) > 0 {
		a.t.Fatalf("prune failures: %v", rep.Failures)
	}
	return rep
}

func h29Has(t *testing.T, keys map[string]bool, want bool, ks ...string) {
	t.Helper()
	for _, k := range ks {
		if keys[k] != want {
			t.Errorf("object %s: present=%v, want %v", k, keys[k], want)
		}
	}
}

func TestH29PruneVersions(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// compacted partition: base 0 rewritten three times by the cleaner.
	m1, d1 := a.version("__consumer_offsets", 0, 1, 0, 100, now.Add(-10*day))
	m2, d2 := a.version("__consumer_offsets", 0, 1, 0, 100, now.Add(-5*day)) // live at the window start
	m3, d3 := a.version("__consumer_offsets", 0, 1, 0, 100, now.Add(-time.Hour))
	// an old live version: kept whatever its age.
	m4, d4 := a.version("__consumer_offsets", 0, 1, 100, 200, now.Add(-400*day))
	// a cleaner merge of [300,350) and [350,400) into [300,400) before the window.
	m5, d5 := a.version("__consumer_offsets", 0, 1, 300, 350, now.Add(-20*day))
	m6, d6 := a.version("__consumer_offsets", 0, 1, 350, 400, now.Add(-20*day))
	m7, d7 := a.version("__consumer_offsets", 0, 1, 300, 400, now.Add(-3*day))
	// another broker's copy of the old version: its own chain, kept.
	m8, d8 := a.version("__consumer_offsets", 0, 2, 0, 100, now.Add(-10*day))

	dry := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1, DryRun: true})
	if len(dry.Units) != 3 || dry.BytesFreed == 0 {
		t.Fatalf("dry run: %d units, %d bytes freed, want 3 units: %+v", len(dry.Units), dry.BytesFreed, dry.Units)
	}
	before := a.keys()
	h29Has(t, before, true, m1, d1, m5, d5, m6, d6)
	rep := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	keys := a.keys()
	h29Has(t, keys, false, m1, d1, m5, d5, m6, d6)
	h29Has(t, keys, true, m2, d2, m3, d3, m4, d4, m7, d7, m8, d8)
	if rep.BytesFreed != dry.BytesFreed || len(rep.Deleted) != 6 {
		t.Errorf("freed %d bytes in %d objects (dry run said %d)", rep.BytesFreed, len(rep.Deleted), dry.BytesFreed)
	}
	for k := range keys {
		if strings.Contains(k, DeletionMarkDir) {
			t.Errorf("mark %s left behind without a delete delay", k)
		}
	}
	t.Logf("bytes freed: %d in %d objects", rep.BytesFreed, len(rep.Deleted))
	// a second prune deletes nothing.
	if rep2 := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1}); len(rep2.Deleted) != 0 || len(rep2.Units) != 0 {
		t.Errorf("second prune deleted %v", rep2.Deleted)
	}
	// with a longer window, nothing more goes.
	if rep3 := a.prune(PruneOptions{KeepWithin: 30 * day, Now: now, DeleteDelay: -1}); len(rep3.Deleted) != 0 {
		t.Errorf("wider window deleted %v", rep3.Deleted)
	}
}

func TestH29PruneGapsLogDirsOrphans(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	a.version("t", 0, 1, 0, 100, now.Add(-10*day))
	covered := a.gap("t", 0, 1, 0, 100, now.Add(-9*day))     // data covers it: goes
	uncovered := a.gap("t", 0, 1, 100, 150, now.Add(-9*day)) // explains a hole: stays
	recent := a.gap("t", 1, 1, 0, 10, now.Add(-time.Hour))   // a partition with markers only
	l1 := a.logdir(1, "kafka-logs", now.Add(-10*day))
	l2 := a.logdir(1, "kafka-logs", now.Add(-5*day))
	l3 := a.logdir(1, "kafka-logs", now.Add(-3*day)) // the state at the window start
	l4 := a.logdir(1, "kafka-logs", now.Add(-1*day))
	o1 := a.l.DataKey(SegmentRef{Cluster: a.cl, Topic: "t", Partition: 0, TopicID: NoTopicID, BaseOffset: 200, Broker: 1, ContentID: "aaaaaaaaaaaa"}, "00000000000000000200.log", ".zst")
	a.put(o1, []byte("interrupted upload"))
	a.age(o1, now.Add(-30*time.Hour))
	o2 := a.l.DataKey(SegmentRef{Cluster: a.cl, Topic: "t", Partition: 0, TopicID: NoTopicID, BaseOffset: 300, Broker: 1, ContentID: "bbbbbbbbbbbb"}, "00000000000000000300.log", ".zst")
	a.put(o2, []byte("upload in flight"))
	rep := a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	keys := a.keys()
	h29Has(t, keys, false, covered, l1, l2, o1)
	h29Has(t, keys, true, uncovered, recent, l3, l4, o2)
	if len(rep.Deleted) != 4 {
		t.Errorf("deleted %v", rep.Deleted)
	}
	// only capture: kept whatever its age.
	b := h29NewLocal(t)
	only := b.logdir(3, "d", now.Add(-100*day))
	b.prune(PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1})
	h29Has(t, b.keys(), true, only)
}

func TestH29PruneDeleteDelay(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	m1, d1 := a.version("t", 0, 1, 0, 100, now.Add(-10*day))
	a.version("t", 0, 1, 0, 100, now.Add(-5*day))
	rep := a.prune(PruneOptions{KeepWithin: day, Now: now})
	keys := a.keys()
	h29Has(t, keys, false, m1) // the manifest goes at once
	h29Has(t, keys, true, d1)  // its data after the delay
	mark := a.l.DeletionMarkKey(a.cl, m1)
	h29Has(t, keys, true, mark)
	if len(rep.Pending) != 1 || !rep.Pending[0].DeletableAt.Equal(now.Add(DefaultDeleteDelay)) {
		t.Fatalf("pending %+v", rep.Pending)
	}
	// before the delay: nothing more.
	if rep := a.prune(PruneOptions{KeepWithin: day, Now: now.Add(30 * time.Minute)}); len(rep.Deleted) != 0 || len(rep.Units) != 0 {
		t.Errorf("deleted before the delay: %v", rep.Deleted)
	}
	h29Has(t, a.keys(), true, d1, mark)
	rep = a.prune(PruneOptions{KeepWithin: day, Now: now.Add(2 * time.Hour)})
	h29Has(t, a.keys(), false, d1, mark)
	if len(rep.Units) != 0 {
		t.Errorf("new units after the delay: %+v", rep.Units)
	}
}

// h29FailBucket fails every Delete after n.
type h29FailBucket struct {
	uploader.Bucket
	n atomic.Int64
}

var errH29Crash = errors.New("h29: simulated crash")

func (f *h29FailBucket) Delete(ctx context.Context, key string) error {
	if f.n.Add(-1) < 0 {
		return errH29Crash
	}
	return f.Bucket.Delete(ctx, key)
}

func TestH29PruneResumes(t *testing.T) {
	h29Resumes(t, func() *h29Arch { return h29NewLocal(t) })
}

// TestH29PruneResumesMinIO is TestH29PruneResumes against MinIO.
func TestH29PruneResumesMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	h29Resumes(t, func() *h29Arch {
		return &h29Arch{t: t, b: newTestS3(t, srv, srv.NewBucket(t), nil), l: NewLayout(""), cl: "c1"}
	})
}

// h29Resumes: a prune that fails after n deletes (a crash at every stage:
// after the mark, after the manifest, half way through the data) is
// finished by the next one, which leaves what a clean prune leaves; a third
// deletes nothing. So is one whose context is cancelled (interrupted).
func h29Resumes(t *testing.T, newArch func() *h29Arch) {
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	build := func() *h29Arch {
		a := newArch()
		for p := range int32(4) {
			for i := range 5 {
				a.version("t", p, 1, 0, 100, now.Add(-time.Duration(20-i)*day))
			}
			a.logdir(1, fmt.Sprintf("d%d", p), now.Add(-10*day))
			a.logdir(1, fmt.Sprintf("d%d", p), now.Add(-9*day))
			a.logdir(1, fmt.Sprintf("d%d", p), now.Add(-8*day))
		}
		return a
	}
	clean := build()
	clean.prune(PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1, Concurrency: 1})
	want := []string{}
	for k := range clean.keys() {
		want = append(want, k)
	}
	check := func(what string, a *h29Arch) {
		t.Helper()
		a.prune(PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1})
		got := a.keys()
		if len(got) != len(want) {
			t.Errorf("%s: re-run left %d objects, a clean prune %d", what, len(got), len(want))
		}
		for _, k := range want {
			if !got[k] {
				t.Errorf("%s: %s missing", what, k)
			}
		}
		if rep := a.prune(PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1}); len(rep.Deleted) != 0 {
			t.Errorf("%s: third prune deleted %v", what, rep.Deleted)
		}
	}
	for _, n := range []int64{0, 1, 5, 13, 30} {
		a := build()
		fb := &h29FailBucket{Bucket: a.b}
		fb.n.Store(n)
		rep, err := Prune(context.Background(), fb, a.l, "", PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1, Concurrency: 2})
		if err != nil || len(rep.Failures) == 0 && n < 30 {
			t.Fatalf("crash after %d deletes: err %v, failures %v", n, err, rep.Failures)
		}
		check(fmt.Sprintf("crash after %d deletes", n), a)
	}
	a := build()
	ctx, cancel := context.WithCancel(context.Background())
	cb := &h29CancelBucket{Bucket: a.b, cancel: cancel}
	cb.n.Store(7)
	if _, err := Prune(ctx, cb, a.l, "", PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1, Concurrency: 2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted prune: %v", err)
	}
	check("interrupted", a)
	// per partition: the newest version (live at the window start and
	// since) with its data, and the newest capture (also the state at the
	// window start).
	if len(want) != 4*2+4 {
		sort.Strings(want)
		t.Errorf("kept after a clean prune: %v", want)
	}
}

// h29CancelBucket cancels the context after n deletes.
type h29CancelBucket struct {
	uploader.Bucket
	n      atomic.Int64
	cancel context.CancelFunc
}

func (c *h29CancelBucket) Delete(ctx context.Context, key string) error {
	if c.n.Add(-1) < 0 {
		c.cancel()
		return ctx.Err()
	}
	return c.Bucket.Delete(ctx, key)
}

// TestH29PruneCoverShrinks: a version a merge covered at the window's start
// but that a later rewrite of the merge with a shorter range uncovers is
// live again (restore picks it now): it stays.
func TestH29PruneCoverShrinks(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	ms, ds := a.version("kv", 0, 1, 50, 100, now.Add(-10*day))
	mt, dt := a.version("kv", 0, 1, 0, 100, now.Add(-9*day)) // covers 50 at the window's start
	mu, du := a.version("kv", 0, 1, 0, 50, now.Add(-time.Hour))
	mOld, dOld := a.version("kv", 0, 1, 0, 50, now.Add(-11*day)) // superseded long ago
	a.prune(PruneOptions{KeepWithin: 2 * day, Now: now, DeleteDelay: -1})
	keys := a.keys()
	h29Has(t, keys, true, ms, ds, mt, dt, mu, du)
	h29Has(t, keys, false, mOld, dOld)
}

// TestH29PruneMisplacedManifest: a manifest that is not the one its key
// names (restore leaves it out) supersedes nothing: the version it claims
// to replace stays, and it is reported.
func TestH29PruneMisplacedManifest(t *testing.T) {
	a := h29NewLocal(t)
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	m1, d1 := a.version("kv", 0, 1, 0, 100, now.Add(-10*day))
	m2, _ := a.version("kv", 0, 1, 0, 100, now.Add(-5*day))
	// m2's body, claiming to be another version id: misplaced.
	data, _ := mustGet(t, a.b, m2)
	var m SegmentManifest
	json.Unmarshal(data, &m)
	m.ContentID = "ffffffffffff"
	js, _ := json.Marshal(m)
	if err := a.b.Delete(context.Background(), m2); err != nil {
		t.Fatal(err)
	}
	a.put(m2, js)
	rep, err := Prune(context.Background(), a.b, a.l, "", PruneOptions{KeepWithin: day, Now: now, DeleteDelay: -1})
	if err != nil || len(rep.Undecodable) != 1 || rep.Undecodable[0] != m2 {
		t.Fatalf("prune: %v, undecodable %v", err, rep.Undecodable)
	}
	h29Has(t, a.keys(), true, m1, d1, m2)
}
