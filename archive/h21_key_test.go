package archive

import (
	"strings"
	"testing"
	"time"
)

func TestH21ParseKeyEveryKind(t *testing.T) {
	at := time.Date(2026, 12, 4, 1, 2, 3, 456, time.UTC)
	for _, prefix := range []string{"", "pre/", "a/b/v1/"} {
		l := NewLayout(prefix)
		r := SegmentRef{Cluster: "c1", Topic: "orders.v1", Partition: 7, TopicID: "AAAAAAAAAAAAAAAAAAAAAA", BaseOffset: 1234, Broker: 3, ContentID: "0123456789ab"}
		seg := KeyInfo{Cluster: "c1", Topic: "orders.v1", Partition: 7, TopicID: r.TopicID, BaseOffset: 1234, Broker: 3, VersionID: r.ContentID}
		with := func(k KeyInfo, f func(*KeyInfo)) KeyInfo { f(&k); return k }
		r2 := r
		r2.ContentID = "00112233445566ff"
		cases := []struct {
			key  string
			want KeyInfo
		}{
			{l.ManifestKey(r), with(seg, func(k *KeyInfo) { k.Kind, k.Version = KeySegmentManifest, "v1" })},
			{l.DataKey(r, "00000000000000001234.log", ".zst.enc"), with(seg, func(k *KeyInfo) {
				k.Kind, k.Version, k.File = KeySegmentData, "v1", "00000000000000001234.log.zst.enc"
			})},
			{l.SnapshotDir(r, 5) + ManifestName, with(seg, func(k *KeyInfo) { k.Kind, k.Version, k.SnapshotEpoch = KeySnapshotManifest, "v1", 5 })},
			{l.SnapshotDir(r, 5) + "00000000000000001234-0000000005.checkpoint.zst", with(seg, func(k *KeyInfo) {
				k.Kind, k.Version, k.SnapshotEpoch, k.File = KeySnapshotData, "v1", 5, "00000000000000001234-0000000005.checkpoint.zst"
			})},
			{l.GapKey(r), with(seg, func(k *KeyInfo) { k.Kind, k.Version, k.VersionID = KeyGap, "v1", "" })},
			{l.LogDirKey("c1", 3, "data-kafka", at), KeyInfo{Kind: KeyLogDir, Version: "v1", Cluster: "c1", Broker: 3, LogDir: "data-kafka", CaptureTime: at}},
			{l.SegmentDirV2(r2) + ManifestName, with(seg, func(k *KeyInfo) { k.Kind, k.Version, k.VersionID = KeySegmentManifest, "v2", r2.ContentID })},
			{l.DataKeyV2(l.SegmentDirV2(r2), "00000000000000001234.index"), with(seg, func(k *KeyInfo) {
				k.Kind, k.Version, k.VersionID, k.File = KeySegmentData, "v2", r2.ContentID, "00000000000000001234.index.sv2"
			})},
			{l.SnapshotDirV2(r2, 9) + ManifestName, with(seg, func(k *KeyInfo) {
				k.Kind, k.Version, k.VersionID, k.SnapshotEpoch = KeySnapshotManifest, "v2", r2.ContentID, 9
			})},
			{l.DataKeyV2(l.SnapshotDirV2(r2, 9), "x.checkpoint"), with(seg, func(k *KeyInfo) {
				k.Kind, k.Version, k.VersionID, k.SnapshotEpoch, k.File = KeySnapshotData, "v2", r2.ContentID, 9, "x.checkpoint.sv2"
			})},
			{l.GapKeyV2(r), with(seg, func(k *KeyInfo) { k.Kind, k.Version, k.VersionID = KeyGap, "v2", "" })},
			{l.DivergenceKey(r), with(seg, func(k *KeyInfo) { k.Kind, k.Version, k.VersionID = KeyDivergence, "v2", "" })},
			{l.LogDirKeyV2("c1", 3, "d", at), KeyInfo{Kind: KeyLogDir, Version: "v2", Cluster: "c1", Broker: 3, LogDir: "d", CaptureTime: at}},
			{l.TailPackKey("c1", 3, 42, "00112233445566ff"), KeyInfo{Kind: KeyTailPack, Version: "v2", Cluster: "c1", Broker: 3, Seq: 42, VersionID: "00112233445566ff"}},
			{l.TailManifestKey("c1", 3, 42, "00112233445566ff"), KeyInfo{Kind: KeyTailManifest, Version: "v2", Cluster: "c1", Broker: 3, Seq: 42, VersionID: "00112233445566ff"}},
			{l.ClaimKey("c1", "orders.v1", 7), KeyInfo{Kind: KeyClaim, Version: "v2", Cluster: "c1", Topic: "orders.v1", Partition: 7}},
		}
		for _, c := range cases {
			got, ok := ParseKey(l, c.key)
			if !ok || got != c.want {
				t.Errorf("ParseKey(%q, %q) = %+v, %v; want %+v", prefix, c.key, got, ok, c.want)
				continue
			}
			if got.IsManifest() || got.IsData() {
				if d := got.VersionDir(l); !strings.HasPrefix(c.key, d) || strings.Contains(strings.TrimPrefix(c.key, d), "/") {
					t.Errorf("%s: VersionDir %q", c.key, d)
				}
			}
			if gl, gk, ok := GuessKey(c.key); !ok || gk != c.want || gl.Prefix != l.Prefix && prefix != "a/b/v1/" {
				t.Errorf("GuessKey(%q) = %q %+v %v", c.key, gl.Prefix, gk, ok)
			}
			if again := h21Rebuild(l, got); again != c.key {
				t.Errorf("%s: rebuilt as %s", c.key, again)
			}
			if _, ok := ParseKey(NewLayout("other"), c.key); ok {
				t.Errorf("%s parsed under another prefix", c.key)
			}
		}
	}
}

func TestH21ParseKeyHostile(t *testing.T) {
	l := NewLayout("p")
	bad := []string{
		"", "p", "p/", "p/v1", "p/v1/", "p/v3/c/topics/t/0/id/segments/00000000000000000001/1-abc/manifest.json",
		"v1/c/topics/t/0/id/segments/00000000000000000001/1-abc/manifest.json", // no prefix
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/1-abc/manifest.json/x",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/1-abc/",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001//manifest.json",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/1-/manifest.json",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/1/manifest.json",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/-abc/manifest.json",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/x-abc/manifest.json",
		"p/v1/c/topics/t/0/id/segments/99999999999999999999/1-abc/manifest.json",  // > int64
		"p/v1/c/topics/t/0/id/segments/123456789012345678901/1-abc/manifest.json", // 21 digits
		"p/v1/c/topics/t/0/id/segments/-1/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/segments/+1/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/segments/ 1/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/4294967296-abc/manifest.json", // broker > int32
		"p/v1/c/topics/t/2147483648/id/segments/00000000000000000001/1-abc/manifest.json", // partition > int32
		"p/v1/c/topics/t/-1/id/segments/00000000000000000001/1-abc/manifest.json",
		"p/v1/c/topics/../0/id/segments/00000000000000000001/1-abc/manifest.json",
		"p/v1/c/topics/t/0/./segments/00000000000000000001/1-abc/manifest.json",
		"p/v1/../topics/t/0/id/segments/00000000000000000001/1-abc/manifest.json",
		"p/v1//topics/t/0/id/segments/00000000000000000001/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/1-../manifest.json",
		"p/v1/c/topics/t/0/id/snapshots/00000000000000000001/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/snapshots/1-0000000001/1-abc/manifest.json",                    // offset not padded
		"p/v1/c/topics/t/0/id/snapshots/00000000000000000001-1/1-abc/manifest.json",          // epoch not padded
		"p/v1/c/topics/t/0/id/snapshots/00000000000000000001-9999999999/1-abc/manifest.json", // epoch > int32
		"p/v1/c/topics/t/0/id/segments/1/1-abc/manifest.json",                                // base not padded
		"p/v1/c/topics/t/00/id/segments/00000000000000000001/1-abc/manifest.json",            // partition with a leading zero
		"p/v1/c/topics/t/0/id/segments/00000000000000000001/01-abc/manifest.json",            // broker with a leading zero
		"p/v1/c/topics/t/0/id/gaps/1-1.json",                                                 // base not padded
		"p/v2/c/brokers/1/tails/1-abc.pack",                                                  // seq not padded
		"p/v1/c/topics/t/0/id/snapshots/00000000000000000001-/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/snapshots/00000000000000000001-x/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/other/00000000000000000001/1-abc/manifest.json",
		"p/v1/c/topics/t/0/id/gaps/1-2",
		"p/v1/c/topics/t/0/id/gaps/00000000000000000001.json",
		"p/v1/c/topics/t/0/id/gaps/00000000000000000001-x.json",
		"p/v1/c/topics/t/0/id/gaps/x/00000000000000000001-2.json",
		"p/v1/c/brokers/1/logdirs/d/notatime.json",
		"p/v1/c/brokers/1/logdirs/d/20260102T150405.000000000Z",
		"p/v1/c/brokers/x/logdirs/d/20260102T150405.000000000Z.json",
		"p/v1/c/brokers/1/logdirs/20260102T150405.000000000Z.json",
		"p/v1/c/brokers/1/tails/00000000000000000001-abc.pack", // tails are v2 only
		"p/v2/c/brokers/1/tails/00000000000000000001-.pack",
		"p/v2/c/brokers/1/tails/00000000000000000001-abc.zip",
		"p/v2/c/brokers/1/tails/x-abc.json",
		"p/v1/c/claims/t/1.json", // claims are v2 only
		"p/v2/c/claims/t/x.json",
		"p/v2/c/claims/t/1",
		"p/v2/c/claims/t/1.json/x",
		"p/v2/c/other/x/y/z",
		strings.Repeat("p/v1/", 1000),
		"p/v1/" + strings.Repeat("/", 100),
	}
	for _, k := range bad {
		if got, ok := ParseKey(l, k); ok {
			t.Errorf("ParseKey(%q) = %+v, want false", k, got)
		}
	}
	if _, _, ok := GuessKey("/tmp/x/bucket/v1/c/topics/t/0/id/segments/00000000000000000001/1-abc/manifest.json"); !ok {
		t.Error("GuessKey of a local path: not parsed")
	}
}

// h21Rebuild builds the key k describes with the Layout's builders.
func h21Rebuild(l Layout, k KeyInfo) string {
	r := k.Ref()
	switch k.Kind {
	case KeySegmentManifest, KeySnapshotManifest:
		return k.VersionDir(l) + ManifestName
	case KeySegmentData, KeySnapshotData:
		return k.VersionDir(l) + k.File
	case KeyGap:
		if k.Version == LayoutVersionV2 {
			return l.GapKeyV2(r)
		}
		return l.GapKey(r)
	case KeyLogDir:
		if k.Version == LayoutVersionV2 {
			return l.LogDirKeyV2(k.Cluster, k.Broker, k.LogDir, k.CaptureTime)
		}
		return l.LogDirKey(k.Cluster, k.Broker, k.LogDir, k.CaptureTime)
	case KeyTailPack:
		return l.TailPackKey(k.Cluster, k.Broker, k.Seq, k.VersionID)
	case KeyTailManifest:
		return l.TailManifestKey(k.Cluster, k.Broker, k.Seq, k.VersionID)
	case KeyClaim:
		return l.ClaimKey(k.Cluster, k.Topic, k.Partition)
	case KeyDivergence:
		return l.DivergenceKey(r)
	}
	return ""
}

// FuzzH21ParseKey: no panic, and a key ParseKey accepts is exactly the key
// the builders make of what it says.
func FuzzH21ParseKey(f *testing.F) {
	l := NewLayout("p")
	r := SegmentRef{Cluster: "c", Topic: "t", Partition: 3, TopicID: NoTopicID, BaseOffset: 77, Broker: 2, ContentID: "abc123"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, k := range []string{l.ManifestKey(r), l.DataKey(r, "x.log", ".zst"), l.SnapshotDir(r, 4) + "y", l.GapKey(r), l.GapKeyV2(r),
		l.LogDirKey("c", 2, "d", at), l.LogDirKeyV2("c", 2, "d", at), l.TailPackKey("c", 2, 9, "ff"), l.TailManifestKey("c", 2, 9, "ff"),
		l.ClaimKey("c", "t", 3), l.DivergenceKey(r), l.SegmentDirV2(r) + ManifestName, "p/v1/x"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k, ok := ParseKey(l, key)
		if !ok {
			return
		}
		if again := h21Rebuild(l, k); again != key {
			t.Fatalf("%q parsed as %+v, which builds %q", key, k, again)
		}
	})
}
