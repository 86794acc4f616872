package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

func h21Put(t *testing.T, b uploader.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// h21Archive fills a local store with one object of every kind, of both
// layout versions.
func h21Archive(t *testing.T) (uploader.Bucket, Layout, map[string]string) {
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	l := NewLayout("pre")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r1 := SegmentRef{Cluster: "c", Topic: "t", Partition: 0, TopicID: NoTopicID, BaseOffset: 0, Broker: 1, ContentID: "0123456789ab"}
	snap := SegmentRef{Cluster: "c", Topic: "__cluster_metadata", Partition: 0, TopicID: NoTopicID, BaseOffset: 100, Broker: 1, ContentID: "aaaaaaaaaaaa"}
	m := h21V2Manifest()
	r2 := m.Ref()
	r2.ContentID = m.UploadID
	v2dir := l.SegmentDirV2(r2)
	for i := range m.Files {
		m.Files[i].DataKey = l.DataKeyV2(v2dir, m.Files[i].Name)
	}
	v2man, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	tm := TailManifest{Format: TailManifestFormat, Version: ManifestVersionV2, ClusterID: "c", BrokerID: 1, Seq: 1, UploadID: "ffff",
		PackKey: l.TailPackKey("c", 1, 1, "ffff"), PackSize: 3, Captures: []TailCapture{{Topic: "t", From: 0, To: 3,
			Chunks: []Chunk{{StoredSize: 3, RawSize: 3, CRC32C: "00000000", RawCRC32C: "00000000", Compression: CompressionNone}}}}}
	tmData, _ := json.Marshal(tm)
	tm2 := tm
	tm2.Seq, tm2.PackKey = 2, l.TailPackKey("c", 1, 2, "eeee")
	tm2Data, _ := json.Marshal(tm2)
	keys := map[string]string{
		"v1man":     l.ManifestKey(r1),
		"v1data":    l.DataKey(r1, "00000000000000000000.log", ".zst"),
		"snapman":   l.SnapshotDir(snap, 3) + ManifestName,
		"snapdata":  l.SnapshotDir(snap, 3) + "00000000000000000100-0000000003.checkpoint",
		"v2man":     v2dir + ManifestName,
		"v2log":     m.Files[0].DataKey,
		"v2orphan":  l.DataKeyV2(l.SegmentDirV2(SegmentRef{Cluster: "c", Topic: "t", TopicID: NoTopicID, BaseOffset: 50, Broker: 1, ContentID: "1234"}), "00000000000000000050.log"),
		"gap":       l.GapKeyV2(r1),
		"logdir1":   l.LogDirKey("c", 1, "d", at),
		"logdir2":   l.LogDirKeyV2("c", 1, "d", at.Add(time.Second)),
		"tail":      l.TailManifestKey("c", 1, 1, "ffff"),
		"pack":      tm.PackKey,
		"tail2":     l.TailManifestKey("c", 1, 2, "eeee"),
		"claim":     l.ClaimKey("c", "t", 0),
		"unknown":   l.Root() + "c/something/else",
		"otherroot": "pre/v9/x",
	}
	body := map[string][]byte{"v2man": v2man, "tail": tmData, "tail2": tm2Data, "claim": []byte(`{}`), "snapman": []byte("{broken"),
		"gap": []byte(`{"format":"segvault.gap","version":1}`)}
	for name, key := range keys {
		data := body[name]
		if data == nil {
			data = []byte("x")
		}
		h21Put(t, b, key, data)
	}
	return b, l, keys
}

func TestH21CatalogTypedEntries(t *testing.T) {
	b, l, keys := h21Archive(t)
	ctx := context.Background()
	c, err := ListAll(ctx, b, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Versions) != 3 {
		t.Fatalf("%d versions, want 3 (v1 segment, v1 KRaft snapshot, v2 segment): %+v", len(c.Versions), c.Versions)
	}
	byKey := map[string]Version{}
	for _, v := range c.Versions {
		byKey[v.Manifest.Key] = v
	}
	if v := byKey[keys["snapman"]]; v.Key.Kind != KeySnapshotManifest || v.Key.SnapshotEpoch != 3 || len(v.Data) != 1 || v.Data[0].Key != keys["snapdata"] {
		t.Errorf("KRaft snapshot version %+v", v)
	}
	if v := byKey[keys["v2man"]]; v.Key.Version != LayoutVersionV2 || len(v.Data) != 1 || v.Data[0].Key != keys["v2log"] {
		t.Errorf("v2 version %+v", v)
	}
	if v := byKey[keys["v1man"]]; len(v.Data) != 1 || v.Data[0].Key != keys["v1data"] {
		t.Errorf("v1 version %+v", v)
	}
	one := func(name string, es []Entry, want ...string) {
		var got []string
		for _, e := range es {
			got = append(got, e.Object.Key)
		}
		var w []string
		for _, n := range want {
			w = append(w, keys[n])
		}
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s: %v, want %v", name, got, w)
		}
	}
	one("orphans", c.Orphans, "v2orphan")
	one("gaps", c.Gaps, "gap")
	one("logdirs", c.LogDirs, "logdir1", "logdir2")
	one("tails", c.Tails, "tail", "tail2")
	one("packs", c.Packs, "pack")
	one("claims", c.Claims, "claim")
	if len(c.Unknown) != 1 || c.Unknown[0].Key != keys["unknown"] {
		t.Errorf("unknown %+v", c.Unknown)
	}
	if c.Orphans[0].Object.ModTime.IsZero() {
		t.Error("orphan without ModTime")
	}
	if got := c.Clusters(); len(got) != 1 || got[0] != "c" {
		t.Errorf("clusters %v", got)
	}
	if got := c.LatestLogDirs("c", 1); len(got) != 1 || got[0].Object.Key != keys["logdir2"] {
		t.Errorf("latest log dirs %+v", got)
	}
	p, err := ListPartition(ctx, b, l, "c", "t", 0)
	if err != nil || len(p.Versions) != 2 || len(p.Gaps) != 1 || len(p.LogDirs) != 0 {
		t.Fatalf("partition catalog %+v %v", p, err)
	}
	res, err := DecodeManifests(ctx, func(ctx context.Context, key string, max int64) ([]byte, error) {
		return uploader.ReadAll(ctx, b, key, max)
	}, c.Versions, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		k := c.Versions[i].Manifest.Key
		if bad := k == keys["snapman"] || k == keys["v1man"]; bad != (r.Err != nil) || r.ReadErr != nil || (r.Err == nil) != (r.Manifest != nil) {
			t.Errorf("%s: %+v", k, r)
		}
	}
}

func TestH21CheckBothRoots(t *testing.T) {
	b, l, keys := h21Archive(t)
	res, err := Check(context.Background(), b, l, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]CheckResult{}
	for _, r := range res {
		got[r.Path] = r
	}
	want := map[string]string{
		keys["v1man"]:                    "corrupt", // "x"
		keys["snapman"]:                  "corrupt", // KRaft snapshot manifests are checked
		keys["v2log"]:                    "corrupt", // read by OpenFile: the object is shorter than its chunks
		keys["v2orphan"]:                 "orphan",
		keys["v1data"]:                   "orphan", // its manifest does not decode
		keys["snapdata"]:                 "orphan",
		keys["unknown"]:                  "orphan",
		keys["gap"]:                      "ok",
		keys["logdir1"]:                  "corrupt",
		keys["logdir2"]:                  "corrupt",
		keys["tail"]:                     "ok",
		keys["tail2"]:                    "ok",
		l.TailPackKey("c", 1, 2, "eeee"): "missing",
		keys["claim"]:                    "ok",
	}
	for k, st := range want {
		if got[k].Status != st {
			t.Errorf("%s: %+v, want %s", k, got[k], st)
		}
	}
	if r, ok := got[keys["pack"]]; ok {
		t.Errorf("the committed tail pack is reported: %+v", r)
	}
	if _, ok := got[keys["otherroot"]]; ok {
		t.Error("an object outside both roots is reported")
	}
	// The v2 manifest's empty .index has no object and is not missing.
	for _, r := range res {
		if r.Status == "missing" && strings.HasSuffix(r.Path, ".index.sv2") {
			t.Errorf("empty v2 file reported missing: %+v", r)
		}
	}
}
