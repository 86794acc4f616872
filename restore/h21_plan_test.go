package restore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// h21MoveToV2 rewrites the v1 manifests of partition p as v2 manifests of
// the same files at their v2 keys and deletes the v1 ones.
func h21MoveToV1(t *testing.T, b uploader.Bucket, l archive.Layout, p int32) int {
	t.Helper()
	ctx := context.Background()
	cat, err := archive.ListAll(ctx, b, l)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range cat.Versions {
		if v.Key.Partition != p || v.Key.Version != archive.LayoutVersionV2 {
			continue
		}
		data, _ := uploader.ReadAll(ctx, b, v.Manifest.Key, archive.MaxManifestSize)
		m, err := archive.DecodeSegmentManifest(v.Manifest.Key, data)
		if err != nil {
			t.Fatal(err)
		}
		m.Version, m.CreatedAt, m.SourceModTime, m.UploadID = archive.ManifestVersion, m.SourceModTime, time.Time{}, ""
		r := m.Ref()
		r.ContentID = m.ContentID
		dir := l.SegmentDir(r)
		for i := range m.Files {
			f := &m.Files[i]
			f.Object = archive.StoredObject{Key: l.DataKey(r, f.Name, ""), Size: f.Size, SHA256: f.SHA256, CRC32C: "00000000", Compression: archive.CompressionNone}
			f.CRC32C, f.DataKey, f.Chunks = "00000000", "", nil
		}
		data, err = json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Create(ctx, dir+archive.ManifestName, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, v.Manifest.Key); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// TestH21PlanReadsBothRoots: restore plans from v1 and v2 manifests alike,
// merged in one listing: the plan of an archive whose partition 1 moved to
// v1 manifests is the plan of the all-v2 archive, with the v1 keys.

func TestH21PlanReadsBothRoots(t *testing.T) {
	root := buildArchive(t)
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := archive.NewLayout("")
	src := restore.NewSource(b, archive.DecodeOptions{})
	before, err := restore.MakePlan(ctx, src, l, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if n := h21MoveToV1(t, b, l, 1); n == 0 {
		t.Fatal("no manifest of partition 1")
	}
	after, err := restore.MakePlan(ctx, src, l, restore.Selection{Broker: -1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Partitions) != len(before.Partitions) || after.Cluster != before.Cluster || len(after.Brokers) != len(before.Brokers) {
		t.Fatalf("plan %+v, want %+v", after, before)
	}
	for i, pp := range after.Partitions {
		bp := before.Partitions[i]
		if pp.Topic != bp.Topic || pp.Partition != bp.Partition || len(pp.Segments) != len(bp.Segments) || pp.Bytes != bp.Bytes ||
			pp.FirstOffset != bp.FirstOffset || pp.LastOffset != bp.LastOffset || len(pp.Gaps) != len(bp.Gaps) {
			t.Fatalf("%s-%d: planned %+v, want %+v", pp.Topic, pp.Partition, pp, bp)
		}
		for j, s := range pp.Segments {
			v1 := strings.HasPrefix(s.Key, l.Root())
			if v1 != (pp.Partition == 1) || s.Manifest.BaseOffset != bp.Segments[j].Manifest.BaseOffset {
				t.Errorf("%s-%d segment %d: key %s (base %d), want base %d under the v1 root only for partition 1", pp.Topic, pp.Partition, j, s.Key, s.Manifest.BaseOffset, bp.Segments[j].Manifest.BaseOffset)
			}
		}
	}
	cs, err := restore.Clusters(ctx, src, l)
	if err != nil || len(cs) != 1 || cs[0] != before.Cluster {
		t.Fatalf("clusters %v %v", cs, err)
	}
}

// TestH21PlanRejectsMisplacedV2: a v2 manifest whose data keys leave its
// version dir, or whose upload id is not its key's, is left out like any
// hostile manifest.
func TestH21PlanRejectsMisplacedV2(t *testing.T) {
	root := buildArchive(t)
	b, _ := uploader.NewLocal(root)
	ctx := context.Background()
	l := archive.NewLayout("")
	all, _ := archive.ListAll(ctx, b, l)
	var key string
	for _, v := range all.Versions {
		if v.Key.Version == archive.LayoutVersionV2 && v.Key.Partition == 0 {
			key = v.Manifest.Key
			break
		}
	}
	data, _ := uploader.ReadAll(ctx, b, key, archive.MaxManifestSize)
	m, err := archive.DecodeSegmentManifest(key, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		want string
		mod  func(m *archive.SegmentManifest)
	}{
		{"outside the segment's prefix", func(m *archive.SegmentManifest) { m.Files[0].DataKey = l.RootV2() + "elsewhere/x.sv2" }},
		{"not those of its key", func(m *archive.SegmentManifest) { m.UploadID = "0000000000000000" }},
		{"neither its data object nor a tail pack", func(m *archive.SegmentManifest) { m.Files[0].Chunks[0].Key = l.Root() + "x" }},
	} {
		m2 := *m
		m2.Files = append([]archive.FileRecord(nil), m.Files...)
		m2.Files[0].Chunks = append([]archive.Chunk(nil), m.Files[0].Chunks...)
		c.mod(&m2)
		data, _ = archive.EncodeManifest(&m2)
		b.Delete(ctx, key)
		if err := b.Create(ctx, key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		plan, err := restore.MakePlan(ctx, restore.NewSource(b, archive.DecodeOptions{}), l, restore.Selection{Broker: -1, LeaveOutBad: true}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Bad) != 1 || plan.Bad[0].Key != key || !strings.Contains(plan.Bad[0].Err, c.want) {
			t.Errorf("bad %+v, want %s left out: %s", plan.Bad, key, c.want)
		}
	}
}
