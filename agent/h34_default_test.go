package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// designated is the default; a single-broker KRaft cluster is settled by
// its metadata (the broker leads everything): it archives every partition
// completely and creates no claim object.
func TestH34DefaultDesignatedSingleBroker(t *testing.T) {
	if d := Defaults().ArchiveReplicas; d != ArchiveReplicasDesignated {
		t.Fatalf("default archive-replicas %q, want %q", d, ArchiveReplicasDesignated)
	}
	dir := filepath.Join(t.TempDir(), "logs")
	_, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, ClusterID: h28Cluster, Seed: 34, SegmentBytes: 4 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 400, BatchRecords: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	id := index.TopicID{0xab, 1}
	part := func(p int32) []byte {
		return h28MetaRecord(index.MetaPartition, 0, h28BE32(p), id[:], h28CompactI32(1), h28CompactI32(1),
			h28CompactI32(), h28CompactI32(), h28BE32(1), h28BE32(3), h28BE32(4), []byte{0})
	}
	h28MetadataLog(t, dir, [][]byte{
		h28MetaRecord(index.MetaRegisterBroker, 0, h28BE32(1), make([]byte, 16), make([]byte, 8), []byte{1, 1, 0, 0, 0}),
		h28MetaRecord(index.MetaTopic, 0, []byte{2, 't'}, id[:], []byte{0}),
		part(0), part(1),
	})
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority = []string{dir}, "file://x", t.TempDir(), 0, false
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := uploader.AsConditional(b); !ok {
		t.Fatal("the local bucket has no conditional writes: the test would not see claims")
	}
	m, _ := h34Run(t, b, cfg)
	got := h28Archived(t, b)
	for p := int32(0); p < 2; p++ {
		cov := mergeRanges(got[p][1])
		if len(got[p]) != 1 || len(cov) != 1 || cov[0] != h28Rolled(t, dir, p) {
			t.Fatalf("t-%d archived %v by %v, want all of %v by broker 1", p, cov, keysOf(got[p]), h28Rolled(t, dir, p))
		}
	}
	cat, err := archive.ListAll(context.Background(), b, archive.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Claims) != 0 {
		t.Fatalf("claim objects in a single-broker KRaft archive: %+v", cat.Claims)
	}
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if strings.Contains(oi.Key, "/claims/") {
			t.Errorf("claim object %s", oi.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := h34Value(t, m.PartitionRoles.WithLabelValues("owner")); v != 3 {
		t.Errorf("owner partitions %v, want 3 (t-0, t-1, __cluster_metadata-0)", v)
	}
}

// The designated archiver skips only what other brokers archived: its own
// segment rewritten in place (the log cleaner: same base, other bytes) is
// archived again, as with archive-replicas=all.
func TestH34DesignatedRearchivesOwnRewrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	_, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, ClusterID: h28Cluster, Seed: 34, SegmentBytes: 4 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 1, Records: 400, BatchRecords: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	id := index.TopicID{0xab, 1}
	h28MetadataLog(t, dir, [][]byte{
		h28MetaRecord(index.MetaRegisterBroker, 0, h28BE32(1), make([]byte, 16), make([]byte, 8), []byte{1, 1, 0, 0, 0}),
		h28MetaRecord(index.MetaTopic, 0, []byte{2, 't'}, id[:], []byte{0}),
		h28MetaRecord(index.MetaPartition, 0, h28BE32(0), id[:], h28CompactI32(1), h28CompactI32(1),
			h28CompactI32(), h28CompactI32(), h28BE32(1), h28BE32(3), h28BE32(4), []byte{0}),
	})
	cfg := Defaults()
	cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority = []string{dir}, "file://x", t.TempDir(), 0, false
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	h34Run(t, b, cfg)
	versions := func() int {
		n := 0
		cat, err := archive.ListAll(context.Background(), b, archive.Layout{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range cat.Versions {
			if v.Key.Topic == "t" && v.Key.BaseOffset == 0 {
				n++
			}
		}
		return n
	}
	if n := versions(); n != 1 {
		t.Fatalf("%d versions of t-0 base 0 after the first pass, want 1", n)
	}
	// The cleaner rewrites segment 0: its first half of batches only.
	log0 := filepath.Join(dir, "t-0", "00000000000000000000.log")
	data, err := os.ReadFile(log0)
	if err != nil {
		t.Fatal(err)
	}
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), log0, segment.ReaderOptions{BaseOffset: -1})
	var ends []int64
	for r.Next() {
		ends = append(ends, r.Batch().Pos+12+int64(r.Batch().Length))
	}
	if r.Err() != nil || len(ends) < 2 {
		t.Fatalf("%s: %v (%d batches)", log0, r.Err(), len(ends))
	}
	tmp := log0 + ".tmp"
	if err := os.WriteFile(tmp, data[:ends[len(ends)/2-1]], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, log0); err != nil {
		t.Fatal(err)
	}
	for _, ix := range []string{".index", ".timeindex"} {
		os.Remove(filepath.Join(dir, "t-0", "00000000000000000000"+ix))
	}
	time.Sleep(10 * time.Millisecond)
	h34Run(t, b, cfg)
	if n := versions(); n != 2 {
		t.Fatalf("%d versions of t-0 base 0 after the rewrite, want 2 (the cleaned version archived)", n)
	}
}
