package archive

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/segment"
)

// h21V2Manifest is a valid v2 manifest of a 5 MiB + 10 byte .log (two
// chunks) and an empty .index (no chunk, no object).
func h21V2Manifest() *SegmentManifest {
	l := NewLayout("pre")
	mt := time.Date(2026, 12, 4, 1, 2, 3, 4, time.FixedZone("x", 3600))
	r := SegmentRef{Cluster: "c", Topic: "t", Partition: 0, TopicID: NoTopicID, BaseOffset: 0, Broker: 1}
	r.ContentID = UploadID(r, "00000000000000000000.log", DefaultChunkSize+10, mt, 42)
	dir := l.SegmentDirV2(r)
	log := segment.FormatName(0, segment.KindLog)
	idx := segment.FormatName(0, segment.KindIndex)
	return &SegmentManifest{Format: SegmentManifestFormat, Version: ManifestVersionV2, ClusterID: "c", BrokerID: 1, LogDir: "/d",
		Topic: "t", Partition: 0, TopicID: NoTopicID, Kind: KindSegment, NextSegmentBase: 10, ContentID: "0123456789ab",
		UploadID: r.ContentID, SourceModTime: mt, Agent: "segvault test", Validation: "shallow",
		Files: []FileRecord{
			{Name: log, Size: DefaultChunkSize + 10, SHA256: strings.Repeat("a", 64), ModTime: mt, DataKey: l.DataKeyV2(dir, log), Chunks: []Chunk{
				{Offset: 0, StoredSize: 1000, RawSize: DefaultChunkSize, CRC32C: "0000abcd", RawCRC32C: "1234abcd", Compression: CompressionZstd},
				{Offset: 1000, StoredSize: 10, RawSize: 10, CRC32C: "00000001", RawCRC32C: "00000002", Compression: CompressionNone},
			}},
			{Name: idx, Size: 0, SHA256: strings.Repeat("b", 64), ModTime: mt, DataKey: l.DataKeyV2(dir, idx)},
		},
		Summary: &SegmentSummary{BaseOffset: 0, FirstOffset: 0, LastOffset: 9, Size: DefaultChunkSize + 10, FirstTimestamp: -1, MaxTimestamp: -1,
			Codecs: map[string]int64{"none": 1, "zstd": 2}, Magics: map[int8]int64{2: 3}},
		PartitionState: &PartitionState{CapturedAt: mt, PartitionMetadata: []byte("version: 0\n")},
	}
}

func TestH21ManifestV2EncodeDecode(t *testing.T) {
	m := h21V2Manifest()
	data, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("created_at")) || bytes.Contains(data, []byte(`"object"`)) {
		t.Fatalf("v2 manifest carries v1 fields:\n%s", data)
	}
	got, err := DecodeSegmentManifest("k", data)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	again, err := EncodeManifest(got)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("re-encode differs (%v):\n%s\n%s", err, data, again)
	}
	// The same content with the times in another zone is the same bytes.
	m2 := h21V2Manifest()
	m2.SourceModTime = m2.SourceModTime.UTC()
	for i := range m2.Files {
		m2.Files[i].ModTime = m2.Files[i].ModTime.In(time.FixedZone("y", -7200))
	}
	if d2, _ := EncodeManifest(m2); !bytes.Equal(d2, data) {
		t.Fatalf("same manifest, other time zone, other bytes:\n%s\n%s", data, d2)
	}
	if !got.SourceModTime.Equal(m.SourceModTime) || got.Files[0].Chunks[1].Offset != 1000 {
		t.Fatalf("decoded %+v", got)
	}
}

func TestH21ManifestV1StillDecodes(t *testing.T) {
	m := h21V2Manifest()
	m.Version, m.UploadID, m.SourceModTime, m.CreatedAt = ManifestVersion, "", time.Time{}, time.Now().UTC()
	for i := range m.Files {
		f := &m.Files[i]
		f.Object = StoredObject{Key: f.DataKey + ".zst", Size: 5, SHA256: "x", CRC32C: "y", Compression: CompressionZstd}
		f.DataKey, f.Chunks = "", nil
	}
	data, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeSegmentManifest("k", data); err != nil {
		t.Fatal(err)
	}
}

func TestH21ManifestV2Rejects(t *testing.T) {
	for _, c := range []struct {
		name, want string
		mod        func(m *SegmentManifest)
	}{
		{"no upload id", "upload_id", func(m *SegmentManifest) { m.UploadID = "" }},
		{"bad upload id", "upload_id", func(m *SegmentManifest) { m.UploadID = "../x" }},
		{"no data key", "data_key", func(m *SegmentManifest) { m.Files[0].DataKey = "" }},
		{"v1 object", "v1 object", func(m *SegmentManifest) { m.Files[1].Object = StoredObject{Key: "x", Size: 1} }},
		{"short chunks", "cover", func(m *SegmentManifest) { m.Files[0].Size++ }},
		{"long chunks", "cover", func(m *SegmentManifest) { m.Files[0].Chunks[1].RawSize = 11 }},
		{"chunk for empty file", "cover", func(m *SegmentManifest) {
			m.Files[1].Chunks = []Chunk{{StoredSize: 1, RawSize: 1, CRC32C: "00000000", RawCRC32C: "00000000", Compression: CompressionNone}}
		}},
		{"empty chunk", "raw size", func(m *SegmentManifest) { m.Files[0].Chunks[1].RawSize = 0; m.Files[0].Size -= 10 }},
		{"negative raw size", "raw size", func(m *SegmentManifest) { m.Files[0].Chunks[1].RawSize = -5; m.Files[0].Size -= 15 }},
		{"huge chunk", "raw size", func(m *SegmentManifest) {
			m.Files[0].Chunks[1].RawSize = 1 << 40
			m.Files[0].Size = DefaultChunkSize + 1<<40
		}},
		{"no stored size", "stored size", func(m *SegmentManifest) { m.Files[0].Chunks[1].StoredSize = 0 }},
		{"gap in object", "offset", func(m *SegmentManifest) { m.Files[0].Chunks[1].Offset = 1001 }},
		{"negative offset", "offset", func(m *SegmentManifest) { m.Files[0].Chunks[0].Offset = -1 }},
		{"bad crc", "crc32c", func(m *SegmentManifest) { m.Files[0].Chunks[0].CRC32C = "xyz" }},
		{"bad raw crc", "crc32c", func(m *SegmentManifest) { m.Files[0].Chunks[0].RawCRC32C = "" }},
		{"bad compression", "compression", func(m *SegmentManifest) { m.Files[0].Chunks[0].Compression = "lz4" }},
		{"bad encryption", "encryption", func(m *SegmentManifest) { m.Files[0].Chunks[0].Encryption = "rot13" }},
		{"encryption without key id", "key_id", func(m *SegmentManifest) { m.Files[0].Chunks[0].Encryption = EncryptionAESGCMStream }},
		{"negative size", "size", func(m *SegmentManifest) { m.Files[1].Size = -1 }},
		{"version 3", "version", func(m *SegmentManifest) { m.Version = 3 }},
	} {
		m := h21V2Manifest()
		c.mod(m)
		data, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("%s: encode: %v", c.name, err)
		}
		_, err = DecodeSegmentManifest("the/key", data)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "the/key") {
			t.Errorf("%s: err %v, want one naming the key and %q", c.name, err, c.want)
		}
	}
}
