package index

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segvault/segvault/segment"
)

// fixtureRoot holds real broker-written files (see its CATALOG.md).
const fixtureRoot = "../../shared/fixtures/kafka-real"

type fixtureRow struct {
	Dir, Path, Kind, Check, Summary string
	Bytes                           string
}

func (r fixtureRow) file() string { return filepath.Join(fixtureRoot, r.Dir, r.Path) }

// fixtureRows reads MANIFEST.tsv: every fixture file with its kind and the
// independent checker's verdict.
func fixtureRows(t testing.TB) []fixtureRow {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureRoot, "MANIFEST.tsv"))
	if err != nil {
		t.Fatalf("fixtures missing (they live in shared/ beside the repo): %v", err)
	}
	defer f.Close()
	var rows []fixtureRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 9 || c[0] == "fixture_dir" {
			continue
		}
		rows = append(rows, fixtureRow{Dir: c[0], Path: c[3], Bytes: c[4], Kind: c[6], Check: c[7], Summary: c[8]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 1000 {
		t.Fatalf("MANIFEST.tsv lists only %d files", len(rows))
	}
	return rows
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readOpt returns nil for a missing file.
func readOpt(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// verifyFixtureSegment verifies the side files of the segment whose .log is logPath.
func verifyFixtureSegment(t testing.TB, logPath string) (*SegmentReport, error) {
	t.Helper()
	n, ok := segment.ParseFileName(filepath.Base(logPath))
	if !ok {
		t.Fatalf("bad segment name %s", logPath)
	}
	stem := strings.TrimSuffix(logPath, ".log")
	data := readFile(t, logPath)
	files := SideFiles{Index: readOpt(t, stem+".index"), TimeIndex: readOpt(t, stem+".timeindex"), TxnIndex: readOpt(t, stem+".txnindex")}
	return VerifySegment(bytes.NewReader(data), int64(len(data)), filepath.Base(logPath), files, VerifyOptions{BaseOffset: n.BaseOffset})
}

// TestFixtureIndexes verifies every real .index and .timeindex against its
// .log: no corruption anywhere, and byte-identical rebuilds exactly where
// the independent checker found the file reproducible (check OK with
// matchesRecomputed=yes) and not where it did not (OK*).
func TestFixtureIndexes(t *testing.T) {
	var verified, reproducible, notReproducible, structural int
	for _, r := range fixtureRows(t) {
		if r.Kind != "index" && r.Kind != "timeindex" {
			continue
		}
		p := r.file()
		logPath := strings.TrimSuffix(p, filepath.Ext(p)) + ".log"
		if _, err := os.Stat(logPath); err != nil {
			// __cluster_metadata's .log is not in the fixtures: structure only.
			n, _ := segment.ParseFileName(filepath.Base(p))
			var perr error
			if r.Kind == "index" {
				var idx *OffsetIndex
				idx, perr = ParseOffsetIndex(r.Path, readFile(t, p), n.BaseOffset)
				if perr == nil && !idx.Trimmed {
					t.Errorf("%s: not trimmed", r.Path)
				}
			} else {
				_, perr = ParseTimeIndex(r.Path, readFile(t, p), n.BaseOffset)
			}
			if perr != nil {
				t.Errorf("%s/%s: %v", r.Dir, r.Path, perr)
			}
			structural++
			continue
		}
		rep, err := verifyFixtureSegment(t, logPath)
		if err != nil {
			t.Errorf("%s/%s: %v", r.Dir, r.Path, err)
			continue
		}
		fr := &rep.Index
		if r.Kind == "timeindex" {
			fr = &rep.TimeIndex
		}
		verified++
		for _, pr := range fr.Problems {
			if pr.Corrupt {
				t.Errorf("%s/%s: corrupt: %+v", r.Dir, r.Path, pr)
			}
		}
		// The checker marks non-reproducible files OK*; files it did not
		// recompute (empty ones) say nothing and are reproducible.
		wantRepro := r.Check == "OK" && !strings.Contains(r.Summary, "matchesRecomputed=NO")
		if fr.Reproducible != wantRepro {
			t.Errorf("%s/%s: reproducible=%v, catalog says %s %q; rules %v problems %+v", r.Dir, r.Path, fr.Reproducible, r.Check, r.Summary, fr.Rules, fr.Problems)
		}
		if fr.Reproducible {
			reproducible++
		} else {
			notReproducible++
			t.Logf("%s/%s: valid, not reproducible: rules %v, problems %d", r.Dir, r.Path, fr.Rules, len(fr.Problems))
		}
	}
	t.Logf("verified %d index files against their logs (%d reproducible byte for byte, %d valid only), %d structure-only", verified, reproducible, notReproducible, structural)
	if verified < 500 {
		t.Errorf("only %d index files verified", verified)
	}
}

// TestFixtureRebuild rebuilds every real .log and checks the result equals
// the broker's files wherever those are reproducible (VerifySegment's
// verdict, itself checked against the catalog by TestFixtureIndexes).
func TestFixtureRebuild(t *testing.T) {
	n := 0
	for _, r := range fixtureRows(t) {
		if r.Kind != "log" {
			continue
		}
		p := r.file()
		fn, _ := segment.ParseFileName(filepath.Base(p))
		data := readFile(t, p)
		res, err := Rebuild(bytes.NewReader(data), int64(len(data)), filepath.Base(p), RebuildOptions{BaseOffset: fn.BaseOffset})
		if err != nil {
			t.Errorf("%s/%s: %v", r.Dir, r.Path, err)
			continue
		}
		if res.ValidBytes != int64(len(data)) || res.TxnIndex != nil || len(res.OpenTxns) != 0 {
			t.Errorf("%s/%s: valid %d of %d bytes, txn %x open %v", r.Dir, r.Path, res.ValidBytes, len(data), res.TxnIndex, res.OpenTxns)
		}
		stem := strings.TrimSuffix(p, ".log")
		rep, err := verifyFixtureSegment(t, p)
		if err != nil {
			t.Errorf("%s/%s: %v", r.Dir, r.Path, err)
			continue
		}
		if idx := readOpt(t, stem+".index"); idx != nil && rep.Index.Reproducible && !bytes.Equal(idx, res.OffsetIndex) {
			t.Errorf("%s/%s: rebuilt .index differs", r.Dir, r.Path)
		}
		if ti := readOpt(t, stem+".timeindex"); ti != nil && rep.TimeIndex.Reproducible && !bytes.Equal(ti, res.TimeIndex) {
			t.Errorf("%s/%s: rebuilt .timeindex differs", r.Dir, r.Path)
		}
		// The rebuild of a valid log must itself verify as reproducible.
		again, err := VerifySegment(bytes.NewReader(data), int64(len(data)), filepath.Base(p),
			SideFiles{Index: res.OffsetIndex, TimeIndex: res.TimeIndex}, VerifyOptions{BaseOffset: fn.BaseOffset})
		if err != nil || !again.Index.Reproducible || !again.TimeIndex.Reproducible || len(again.Index.Problems)+len(again.TimeIndex.Problems) != 0 {
			t.Errorf("%s/%s: rebuilt indexes do not verify cleanly: %v %+v %+v", r.Dir, r.Path, err, again.Index, again.TimeIndex)
		}
		n++
	}
	t.Logf("rebuilt %d logs", n)
}

// TestFixtureSideFiles parses every real side file and writes it back
// byte for byte where index has a writer.
func TestFixtureSideFiles(t *testing.T) {
	counts := map[string]int{}
	for _, r := range fixtureRows(t) {
		p := r.file()
		var err error
		switch r.Kind {
		case "producer-snapshot":
			b := readFile(t, p)
			var es []ProducerEntry
			if es, err = DecodeProducerSnapshot(r.Path, b); err == nil && !bytes.Equal(EncodeProducerSnapshot(es), b) {
				t.Errorf("%s/%s: snapshot does not round-trip", r.Dir, r.Path)
			}
		case "leader-epoch-checkpoint":
			b := readFile(t, p)
			var es []EpochEntry
			if es, err = ParseLeaderEpochCheckpoint(r.Path, b); err == nil && len(b) > 0 && !bytes.Equal(FormatLeaderEpochCheckpoint(es), b) {
				t.Errorf("%s/%s: checkpoint does not round-trip", r.Dir, r.Path)
			}
		case "recovery-point-offset-checkpoint", "log-start-offset-checkpoint", "replication-offset-checkpoint", "cleaner-offset-checkpoint":
			b := readFile(t, p)
			var es []CheckpointEntry
			if es, err = ParseOffsetCheckpoint(r.Path, b); err == nil && len(b) > 0 && !bytes.Equal(FormatOffsetCheckpoint(es), b) {
				t.Errorf("%s/%s: checkpoint does not round-trip", r.Dir, r.Path)
			}
		case "partition.metadata":
			b := readFile(t, p)
			var id string
			if id, err = ParsePartitionMetadata(r.Path, b); err == nil && !bytes.Equal(FormatPartitionMetadata(id), b) {
				t.Errorf("%s/%s: partition.metadata does not round-trip", r.Dir, r.Path)
			}
		case "meta.properties":
			var m *MetaProperties
			if m, err = ParseMetaProperties(r.Path, readFile(t, p)); err == nil && m.NodeID < 0 {
				t.Errorf("%s/%s: no node id", r.Dir, r.Path)
			}
		case "kraft-snapshot(log)":
			b := readFile(t, p)
			var rep *KRaftSnapshotReport
			if rep, err = VerifyKRaftSnapshot(bytes.NewReader(b), int64(len(b)), r.Path); err == nil && (!rep.HasHeader || !rep.HasFooter || rep.Batches != 3) {
				t.Errorf("%s/%s: %+v", r.Dir, r.Path, rep)
			}
		default:
			continue
		}
		if err != nil {
			t.Errorf("%s/%s: %v", r.Dir, r.Path, err)
		}
		counts[r.Kind]++
	}
	t.Logf("parsed %v", counts)
	for _, k := range []string{"producer-snapshot", "leader-epoch-checkpoint", "partition.metadata", "meta.properties", "kraft-snapshot(log)", "recovery-point-offset-checkpoint"} {
		if counts[k] == 0 {
			t.Errorf("no %s fixtures", k)
		}
	}
}

// TestFixtureProducerSnapshots rebuilds the real non-empty producer
// snapshots from their partitions' segments.
func TestFixtureProducerSnapshots(t *testing.T) {
	for _, tc := range []struct{ dir, snap string }{
		// One transactional batch + COMMIT marker: coordinatorEpoch 0 and the
		// marker's timestamp.
		{"ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/_confluent-ksql-default__command_topic-0", "00000000000000000002.snapshot"},
		// Two idempotent producers; 10000 is written before 7000 (HashMap order).
		{"NikhilDighe9975__kafka_setup/kafka-logs/nikhilDemo-0", "00000000000000000003.snapshot"},
	} {
		dir := filepath.Join(fixtureRoot, tc.dir)
		want := readFile(t, filepath.Join(dir, tc.snap))
		log := readFile(t, filepath.Join(dir, "00000000000000000000.log"))
		got, end, err := BuildProducerSnapshot(nil, SegmentSource{R: bytes.NewReader(log), Size: int64(len(log)), Name: "00000000000000000000.log"})
		if err != nil {
			t.Fatal(err)
		}
		if segment.FormatName(end, segment.KindSnapshot) != tc.snap || !bytes.Equal(got, want) {
			ge, _ := DecodeProducerSnapshot("got", got)
			we, _ := DecodeProducerSnapshot("want", want)
			t.Errorf("%s: got %d %+v, want %s %+v", tc.dir, end, ge, tc.snap, we)
		}
	}
}

// TestFixtureMyTopicSnapshot covers DonaldY's myTopic-0 snapshot (3
// producers at offset 38). Its data segments were deleted by retention
// before the commit (the only segment is the empty 00000000000000000038.log,
// leader-epoch-checkpoint "0 38"), so it cannot be rebuilt from batches.
// What can be checked: it seeds a ProducerState that reproduces it exactly
// across the empty segment, its fields are consistent, and its transactions
// (none open) chain into a rebuild.
func TestFixtureMyTopicSnapshot(t *testing.T) {
	dir := filepath.Join(fixtureRoot, "DonaldY__kafka-2.7.1/kafka-logs/myTopic-0")
	want := readFile(t, filepath.Join(dir, "00000000000000000038.snapshot"))
	es, err := DecodeProducerSnapshot("00000000000000000038.snapshot", want)
	if err != nil || len(es) != 3 {
		t.Fatal(es, err)
	}
	for _, e := range es {
		if e.LastOffset >= 38 || e.LastOffset-int64(e.OffsetDelta) < 0 || e.LastSequence < e.OffsetDelta || e.CurrentTxnFirstOffset != -1 || e.CoordinatorEpoch != -1 {
			t.Errorf("inconsistent entry %+v", e)
		}
	}
	log := readFile(t, filepath.Join(dir, "00000000000000000038.log"))
	got, end, err := BuildProducerSnapshot(ProducerStateFromSnapshot(es, 38),
		SegmentSource{R: bytes.NewReader(log), Size: int64(len(log)), Name: "00000000000000000038.log", BaseOffset: 38})
	if err != nil || end != 38 || !bytes.Equal(got, want) {
		t.Fatalf("end %d err %v equal %v", end, err, bytes.Equal(got, want))
	}
	if m := OpenTxnsFromSnapshot(es); len(m) != 0 {
		t.Errorf("open txns %v", m)
	}
}

// TestFixtureLeaderEpochs derives leader epochs from real segments and
// compares them with the broker's leader-epoch-checkpoint.
func TestFixtureLeaderEpochs(t *testing.T) {
	dir := filepath.Join(fixtureRoot, "BiggerBrain__kafka/data/lsx1-0")
	cp, err := ParseLeaderEpochCheckpoint("leader-epoch-checkpoint", readFile(t, filepath.Join(dir, "leader-epoch-checkpoint")))
	if err != nil {
		t.Fatal(err)
	}
	log := readFile(t, filepath.Join(dir, "00000000000000000000.log"))
	got, err := DeriveLeaderEpochs(nil, SegmentSource{R: bytes.NewReader(log), Size: int64(len(log)), Name: "lsx1-0"})
	if err != nil {
		t.Fatal(err)
	}
	// The last checkpoint entry "7 14" was assigned at the log end when the
	// broker became leader in epoch 7; no batch carries it, and Kafka's own
	// load (truncateFromEnd(logEnd=14)) drops it until the next election.
	clipped := ClipLeaderEpochs(cp, 0, 14)
	if !slices.Equal(got, clipped) || len(got) != 5 {
		t.Errorf("derived %v, checkpoint clipped %v (full %v)", got, clipped, cp)
	}
	// Through Summaries (archive manifests) the result is the same.
	sum, err := segment.Scan(bytes.NewReader(log), int64(len(log)), "lsx1-0", segment.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fs := EpochsFromSummaries(sum); !slices.Equal(fs, got) {
		t.Errorf("from summaries %v, want %v", fs, got)
	}
}
