package index

import (
	"bytes"
	"path/filepath"
	"testing"
)

// The largest real segment: 1 MB, 8202 batches, 254 index entries.
const benchSeg = "William0423__kafka/kafka-logs/__consumer_offsets-28/00000000000000000000"

func benchFiles(b *testing.B) (log, idx, tidx []byte) {
	p := filepath.Join(fixtureRoot, benchSeg)
	return readFile(b, p+".log"), readFile(b, p+".index"), readFile(b, p+".timeindex")
}

func BenchmarkRebuild(b *testing.B) {
	log, _, _ := benchFiles(b)
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rebuild(bytes.NewReader(log), int64(len(log)), "x.log", RebuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRebuildTxn(b *testing.B) {
	log := golden(b, "txn", "00000000000000000009.log")
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rebuild(bytes.NewReader(log), int64(len(log)), "x.log", RebuildOptions{BaseOffset: 9}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySegment(b *testing.B) {
	log, idx, tidx := benchFiles(b)
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "x.log", SideFiles{Index: idx, TimeIndex: tidx}, VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseOffsetIndex(b *testing.B) {
	_, idx, _ := benchFiles(b)
	b.SetBytes(int64(len(idx)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseOffsetIndex("x.index", idx, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildProducerSnapshot(b *testing.B) {
	log := golden(b, "txn", "00000000000000000009.log")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := BuildProducerSnapshot(nil, SegmentSource{R: bytes.NewReader(log), Size: int64(len(log)), Name: "x.log", BaseOffset: 9}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyKRaftSnapshot(b *testing.B) {
	snap := readFile(b, filepath.Join(fixtureRoot, "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/__cluster_metadata-0/00000000000000060500-0000000025.checkpoint"))
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyKRaftSnapshot(bytes.NewReader(snap), int64(len(snap)), "x.checkpoint"); err != nil {
			b.Fatal(err)
		}
	}
}
