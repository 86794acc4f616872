package index

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/segvault/segvault/segment"
)

// Fuzz targets: every decoder must not panic, must allocate no more than
// its input justifies, and must round-trip what it accepts. The committed
// seed corpus (testdata/fuzz/<Name>/) comes from real broker files and
// Kafka-written goldens; TestWriteFuzzCorpus regenerates it.

func FuzzOffsetIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, base int64) {
		base &= 1<<62 - 1
		idx, err := ParseOffsetIndex("f", b, base)
		if len(idx.Entries) > len(b)/OffsetEntrySize || idx.Slots != len(b)/OffsetEntrySize {
			t.Fatalf("%d entries / %d slots from %d bytes", len(idx.Entries), idx.Slots, len(b))
		}
		if err != nil {
			return
		}
		enc, err := EncodeOffsetIndex(idx.Entries, base)
		if err != nil || !bytes.Equal(enc, b[:idx.Layout.Entries*OffsetEntrySize]) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzTimeIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, base int64) {
		base &= 1<<62 - 1
		idx, err := ParseTimeIndex("f", b, base)
		if len(idx.Entries) > len(b)/TimeEntrySize || idx.Slots != len(b)/TimeEntrySize {
			t.Fatalf("%d entries / %d slots from %d bytes", len(idx.Entries), idx.Slots, len(b))
		}
		if err != nil {
			return
		}
		enc, err := EncodeTimeIndex(idx.Entries, base)
		if err != nil || !bytes.Equal(enc, b[:idx.Layout.Entries*TimeEntrySize]) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzTxnIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, base int64) {
		es, err := ParseTxnIndex("f", b, base)
		if len(es) > len(b)/TxnEntrySize {
			t.Fatalf("%d entries from %d bytes", len(es), len(b))
		}
		if err != nil {
			return
		}
		enc, err := EncodeTxnIndex(es)
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzProducerSnapshot(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := DecodeProducerSnapshot("f", b)
		if err != nil {
			return
		}
		if len(es) > len(b)/snapshotEntrySize || !bytes.Equal(EncodeProducerSnapshot(es), b) {
			t.Fatalf("round trip of %d entries", len(es))
		}
		// A state seeded from it writes the same entries back (in Kafka's
		// order, which may differ from the file's).
		got := ProducerStateFromSnapshot(es, 0).Entries()
		want := slices.Clone(es)
		SortProducersJavaHashMap(want)
		if !slices.EqualFunc(got, want, func(a, b ProducerEntry) bool { return a.ProducerID == b.ProducerID }) && !hasDuplicateIDs(es) {
			t.Fatalf("state order %v, want %v", got, want)
		}
	})
}

func hasDuplicateIDs(es []ProducerEntry) bool {
	seen := map[int64]bool{}
	for _, e := range es {
		if seen[e.ProducerID] {
			return true
		}
		seen[e.ProducerID] = true
	}
	return false
}

func FuzzLeaderEpochCheckpoint(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ParseLeaderEpochCheckpoint("f", b)
		if err != nil {
			return
		}
		again, err := ParseLeaderEpochCheckpoint("f", FormatLeaderEpochCheckpoint(es))
		if err != nil || !slices.Equal(again, es) {
			t.Fatalf("round trip: %v", err)
		}
		c := NewEpochCache(es)
		c.TruncateFromEnd(100)
		c.TruncateFromStart(50)
		for _, e := range c.Entries() {
			if e.StartOffset < 50 || e.StartOffset >= 100 {
				t.Fatalf("clip left %v", e)
			}
		}
	})
}

func FuzzOffsetCheckpoint(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ParseOffsetCheckpoint("f", b)
		if err != nil {
			return
		}
		again, err := ParseOffsetCheckpoint("f", FormatOffsetCheckpoint(es))
		if err != nil || !slices.Equal(again, es) {
			t.Fatalf("round trip: %v %v %v", err, es, again)
		}
	})
}

func FuzzPartitionMetadata(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParsePartitionMetadata("f", b)
		if err != nil {
			return
		}
		again, err := ParsePartitionMetadata("f", FormatPartitionMetadata(id))
		if err != nil || again != id {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzMetaProperties(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetaProperties("f", b)
		if err != nil {
			return
		}
		again, err := ParseMetaProperties("f", FormatMetaProperties(m, "date"))
		if err != nil || again.Version != m.Version || again.NodeID != m.NodeID || again.ClusterID != m.ClusterID || again.DirectoryID != m.DirectoryID {
			t.Fatalf("round trip: %v %+v %+v", err, m, again)
		}
	})
}

// FuzzControlRecord feeds arbitrary record bytes behind a batch header the
// fuzzer controls (no CRC in the way).
func FuzzControlRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, records []byte, count int32, attrs int16) {
		raw := append(make([]byte, segment.V2HeaderSize), records...)
		b := &segment.Batch{Magic: segment.MagicV2, Attributes: attrs, RecordCount: count, BaseOffset: 10, LastOffsetDelta: 5, MaxTimestamp: 7, Length: int32(len(raw) - segment.LogOverhead)}
		c, ok, err := ParseControlRecord(b, raw)
		if ok && (err != nil || c.Offset < 10) {
			t.Fatalf("%+v %v", c, err)
		}
		RecordMaxTimestamp(b, raw)
		lastControlType(b, raw)
		if b.ProducerID = 1; b.Control() {
			NewProducerState().Append(b, raw)
		}
	})
}

// FuzzVerifySegment runs the whole verifier and the rebuild on arbitrary
// logs and side files.
func FuzzVerifySegment(f *testing.F) {
	f.Fuzz(func(t *testing.T, log, idx, tidx, txn []byte) {
		rep, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "f.log", SideFiles{Index: idx, TimeIndex: tidx, TxnIndex: txn}, VerifyOptions{})
		if rep == nil {
			t.Fatal("nil report")
		}
		if rep.Corrupt() && err == nil {
			t.Fatal("corrupt report without error")
		}
		res, rerr := Rebuild(bytes.NewReader(log), int64(len(log)), "f.log", RebuildOptions{})
		if rerr != nil {
			return
		}
		again, err := VerifySegment(bytes.NewReader(log), int64(len(log)), "f.log", SideFiles{Index: res.OffsetIndex, TimeIndex: res.TimeIndex, TxnIndex: res.TxnIndex}, VerifyOptions{})
		if err != nil || !again.Index.Reproducible || !again.TimeIndex.Reproducible || !again.TxnIndex.Reproducible {
			t.Fatalf("rebuild does not verify: %v", err)
		}
		VerifyKRaftSnapshot(bytes.NewReader(log), int64(len(log)), "f.checkpoint")
	})
}

// TestWriteFuzzCorpus writes the seed corpus from real files. Run with
// SEGVAULT_WRITE_FUZZ_CORPUS=1 after changing the sources.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SEGVAULT_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set SEGVAULT_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	fx := func(p string) []byte { return readFile(t, filepath.Join(fixtureRoot, p)) }
	gd := func(c, p string) []byte { return golden(t, c, p) }
	ksql := "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/"
	seeds := map[string][][]any{
		"FuzzOffsetIndex": {
			{gd("plain-interval-700", "00000000000000000025.index"), int64(25)},
			{fx(ksql + "_confluent-ksql-default__command_topic-0/00000000000000000000.index"), int64(0)},
			{append(gd("plain", "00000000000000000000.index"), make([]byte, 64)...), int64(0)},
		},
		"FuzzTimeIndex": {
			{gd("plain-interval-700", "00000000000000000025.timeindex"), int64(25)},
			{fx("NikhilDighe9975__kafka_setup/kafka-logs/__consumer_offsets-12/00000000000000000000.timeindex"), int64(0)},
			{append(gd("plain", "00000000000000000000.timeindex")[:36], make([]byte, 36)...), int64(0)},
		},
		"FuzzTxnIndex": {
			{gd("txn", "00000000000000000009.txnindex"), int64(9)},
			{gd("txn", "00000000000000000000.txnindex"), int64(0)},
		},
		"FuzzProducerSnapshot": {
			{gd("txn", "00000000000000000043.snapshot")},
			{fx("NikhilDighe9975__kafka_setup/kafka-logs/nikhilDemo-0/00000000000000000003.snapshot")},
			{fx("DonaldY__kafka-2.7.1/kafka-logs/myTopic-0/00000000000000000038.snapshot")},
			{EncodeProducerSnapshot(nil)},
		},
		"FuzzLeaderEpochCheckpoint": {
			{fx("BiggerBrain__kafka/data/lsx1-0/leader-epoch-checkpoint")},
			{[]byte("0\n0\n")},
			{[]byte{}},
		},
		"FuzzOffsetCheckpoint": {
			{fx("SharaWeil__kafka-0.11.0/data/recovery-point-offset-checkpoint")},
			{fx("DonaldY__kafka-2.7.1/kafka-logs/cleaner-offset-checkpoint")},
		},
		"FuzzPartitionMetadata": {
			{fx("BiggerBrain__kafka/data/lsx1-0/partition.metadata")},
		},
		"FuzzMetaProperties": {
			{fx(ksql + "meta.properties")},
			{fx("DonaldY__kafka-2.7.1/kafka-logs/meta.properties")},
			{fx("SharaWeil__kafka-0.11.0/data/meta.properties")},
		},
		"FuzzControlRecord": {
			{gd("txn", "00000000000000000000.log")[:0], int32(1), int16(0x30)},
		},
		"FuzzVerifySegment": {
			{gd("txn", "00000000000000000000.log"), gd("txn", "00000000000000000000.index"), gd("txn", "00000000000000000000.timeindex"), gd("txn", "00000000000000000000.txnindex")},
			{fx(ksql + "bootstrap.checkpoint"), []byte{}, []byte{}, []byte(nil)},
		},
	}
	// A real marker record for FuzzControlRecord: the records of the first
	// control batch in the txn golden.
	log := gd("txn", "00000000000000000000.log")
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "x", segment.ReaderOptions{})
	for r.Next() {
		if b := r.Batch(); b.Control() {
			seeds["FuzzControlRecord"] = append(seeds["FuzzControlRecord"], []any{append([]byte(nil), r.Raw()[segment.V2HeaderSize:]...), b.RecordCount, b.Attributes})
			break
		}
	}
	for name, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, args := range list {
			var buf bytes.Buffer
			buf.WriteString("go test fuzz v1\n")
			for _, a := range args {
				switch v := a.(type) {
				case []byte:
					fmt.Fprintf(&buf, "[]byte(%s)\n", strconv.Quote(string(v)))
				case int64:
					fmt.Fprintf(&buf, "int64(%d)\n", v)
				case int32:
					fmt.Fprintf(&buf, "int32(%d)\n", v)
				case int16:
					fmt.Fprintf(&buf, "int16(%d)\n", v)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
