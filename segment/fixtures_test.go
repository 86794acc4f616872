package segment

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fixtureRoot holds real broker-written files (read-only; see its CATALOG.md).
const fixtureRoot = "../../shared/fixtures/kafka-real"

// fixtureFile is one record-batch file under fixtureRoot.
type fixtureFile struct {
	path    string // full path
	rel     string // fixture_dir/path, as in MANIFEST.tsv
	base    int64  // segment base offset from the name, -1 for KRaft checkpoints
	summary string // MANIFEST.tsv's summary column
}

// fixtureFiles walks fixtureRoot for every non-empty .log and .checkpoint
// file, joined with its MANIFEST.tsv line.
func fixtureFiles(t testing.TB) []fixtureFile {
	t.Helper()
	manifest := map[string]string{}
	mf, err := os.ReadFile(filepath.Join(fixtureRoot, "MANIFEST.tsv"))
	if err != nil {
		t.Fatalf("fixtures missing: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(mf))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) == 9 {
			manifest[f[0]+"/"+f[3]] = f[8]
		}
	}
	var out []fixtureFile
	err = filepath.WalkDir(fixtureRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if !strings.HasSuffix(name, ".log") && !strings.HasSuffix(name, ".checkpoint") {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() == 0 {
			return err
		}
		rel, _ := filepath.Rel(fixtureRoot, p)
		ff := fixtureFile{path: p, rel: filepath.ToSlash(rel), base: -1, summary: manifest[filepath.ToSlash(rel)]}
		if n, ok := ParseFileName(name); ok && n.Kind == KindLog {
			ff.base = n.BaseOffset
		}
		out = append(out, ff)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found only %d fixture segments", len(out))
	}
	return out
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func scanBytes(data []byte, base int64, deep bool) (*Summary, error) {
	return Scan(bytes.NewReader(data), int64(len(data)), "seg.log", ScanOptions{ReaderOptions: ReaderOptions{BaseOffset: base}, Deep: deep})
}

var (
	reInt     = regexp.MustCompile(`\b(batches|records|txnBatches|controlBatches|commit|abort)=(\d+)`)
	reOffsets = regexp.MustCompile(`\boffsets=(\d+)\.\.(\d+)`)
	reTS      = regexp.MustCompile(`\bts=(-?\d+)\.\.(-?\d+)`)
	reMap     = regexp.MustCompile(`\b(magic|codec|leaderEpochs)\[([^\]]*)\]`)
	reTSType  = regexp.MustCompile(`tsType=map\[([^\]]*)\]`)
)

// catalogCounts parses "k:v,k:v" or "k:v k:v".
func catalogCounts(s string) map[string]int64 {
	m := map[string]int64{}
	for _, kv := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		k, v, _ := strings.Cut(kv, ":")
		n, _ := strconv.ParseInt(v, 10, 64)
		m[k] = n
	}
	return m
}

// TestFixturesScanClean: every real segment and KRaft checkpoint scans clean
// shallow and deep, both depths agree, and the Summary matches what the
// independent checker wrote in MANIFEST.tsv.
func TestFixturesScanClean(t *testing.T) {
	for _, ff := range fixtureFiles(t) {
		t.Run(ff.rel, func(t *testing.T) {
			data := readFile(t, ff.path)
			shallow, err := scanBytes(data, ff.base, false)
			if err != nil {
				t.Fatalf("shallow: %v", err)
			}
			deep, err := scanBytes(data, ff.base, true)
			if err != nil {
				t.Fatalf("deep: %v", err)
			}
			if shallow.Size != int64(len(data)) {
				t.Errorf("size %d, want %d", shallow.Size, len(data))
			}
			deep.Deep = false
			if !summariesEqual(shallow, deep) {
				t.Errorf("shallow and deep summaries differ:\n%+v\n%+v", shallow, deep)
			}
			checkAgainstCatalog(t, ff, data, deep)
			checkRecordsAgree(t, data, ff.base)
		})
	}
}

// checkAgainstCatalog compares the fields MANIFEST.tsv states.
func checkAgainstCatalog(t *testing.T, ff fixtureFile, data []byte, s *Summary) {
	t.Helper()
	if ff.summary == "" {
		t.Fatalf("%s not in MANIFEST.tsv", ff.rel)
	}
	ints := map[string]int64{}
	for _, m := range reInt.FindAllStringSubmatch(ff.summary, -1) {
		ints[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
	}
	want := func(k string, got int64) {
		if v, ok := ints[k]; ok && v != got {
			t.Errorf("%s = %d, catalog says %d", k, got, v)
		}
	}
	want("batches", s.Batches)
	want("records", s.Records)
	want("txnBatches", s.TransactionalBatches)
	want("controlBatches", s.ControlBatches)
	var commits, aborts int64
	for _, m := range s.Markers {
		if m.Commit {
			commits++
		} else {
			aborts++
		}
	}
	want("commit", commits)
	want("abort", aborts)
	if m := reOffsets.FindStringSubmatch(ff.summary); m != nil {
		first, _ := strconv.ParseInt(m[1], 10, 64)
		last, _ := strconv.ParseInt(m[2], 10, 64)
		if s.FirstOffset != first || s.LastOffset != last {
			t.Errorf("offsets %d..%d, catalog says %d..%d", s.FirstOffset, s.LastOffset, first, last)
		}
	}
	if m := reTS.FindStringSubmatch(ff.summary); m != nil {
		hi, _ := strconv.ParseInt(m[2], 10, 64)
		if s.MaxTimestamp != hi {
			t.Errorf("max timestamp %d, catalog says %d", s.MaxTimestamp, hi)
		}
	}
	for _, m := range reMap.FindAllStringSubmatch(ff.summary, -1) {
		want := catalogCounts(m[2])
		got := map[string]int64{}
		switch m[1] {
		case "magic":
			for k, v := range s.Magics {
				got["v"+strconv.Itoa(int(k))] = v
			}
		case "codec":
			got = s.Codecs
		case "leaderEpochs":
			got = epochCounts(t, data)
		}
		if !mapsEqual(got, want) {
			t.Errorf("%s %v, catalog says %v", m[1], got, want)
		}
	}
	if m := reTSType.FindStringSubmatch(ff.summary); m != nil {
		if c := catalogCounts(m[1]); c["LogAppendTime"] != s.LogAppendTime {
			t.Errorf("LogAppendTime batches %d, catalog says %d", s.LogAppendTime, c["LogAppendTime"])
		}
	}
}

// epochCounts counts batches per partition leader epoch.
func epochCounts(t *testing.T, data []byte) map[string]int64 {
	m := map[string]int64{}
	r := NewReader(bytes.NewReader(data), int64(len(data)), "seg.log", ReaderOptions{BaseOffset: -1})
	for r.Next() {
		m[strconv.Itoa(int(r.Batch().PartitionLeaderEpoch))]++
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return m
}

// checkRecordsAgree walks the records through the public iterator and checks
// them against the batch headers.
func checkRecordsAgree(t *testing.T, data []byte, base int64) {
	t.Helper()
	r := NewReader(bytes.NewReader(data), int64(len(data)), "seg.log", ReaderOptions{BaseOffset: base})
	for r.Next() {
		b := *r.Batch()
		recs, err := r.Records()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != int(b.RecordCount) {
			t.Fatalf("batch at %d: %d records, header says %d", b.Pos, len(recs), b.RecordCount)
		}
		for i, rec := range recs {
			if rec.Offset < b.BaseOffset || rec.Offset > b.LastOffset() || (i > 0 && rec.Offset <= recs[i-1].Offset) {
				t.Fatalf("batch at %d: record %d offset %d outside %d..%d", b.Pos, i, rec.Offset, b.BaseOffset, b.LastOffset())
			}
		}
		again, err := r.Records()
		if err != nil || len(again) != len(recs) {
			t.Fatalf("second Records call: %d records, %v", len(again), err)
		}
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
}

func mapsEqual[K comparable](a, b map[K]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// summariesEqual compares two summaries field by field (maps included).
func summariesEqual(a, b *Summary) bool {
	x, y := *a, *b
	if !mapsEqual(x.Codecs, y.Codecs) || !mapsEqual(x.Magics, y.Magics) {
		return false
	}
	x.Codecs, y.Codecs, x.Magics, y.Magics = nil, nil, nil, nil
	return jsonOf(&x) == jsonOf(&y)
}

// TestFixtureRecordsSpotCheck pins a few decoded values from real files.
func TestFixtureRecordsSpotCheck(t *testing.T) {
	// The ksql command topic holds one transactional record and its COMMIT.
	p := filepath.Join(fixtureRoot, "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/_confluent-ksql-default__command_topic-0/00000000000000000000.log")
	data := readFile(t, p)
	s, err := scanBytes(data, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Markers) != 1 || !s.Markers[0].Commit || s.Markers[0].Offset != 1 || len(s.Aborted) != 0 {
		t.Fatalf("markers %+v aborted %+v", s.Markers, s.Aborted)
	}
	if len(s.Producers) != 1 || s.Producers[0].FirstOffset != 0 {
		t.Fatalf("producers %+v", s.Producers)
	}
	// An LZ4, LogAppendTime segment: every record shows the broker's time.
	p = filepath.Join(fixtureRoot, "mscaldas2012__kafka-connect-spooldir/kafka-data/_confluent-controlcenter-5-1-2-1-monitoring-trigger-event-rekey-0/00000000000000000000.log")
	data = readFile(t, p)
	r := NewReader(bytes.NewReader(data), int64(len(data)), p, ReaderOptions{BaseOffset: 0})
	n := 0
	for r.Next() {
		recs, err := r.Records()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Timestamp != r.Batch().MaxTimestamp {
				t.Fatalf("LogAppendTime record timestamp %d, batch %d", rec.Timestamp, r.Batch().MaxTimestamp)
			}
			n++
		}
	}
	if r.Err() != nil || n != 22 {
		t.Fatalf("%d records, err %v", n, r.Err())
	}
	// The KRaft bootstrap snapshot: SNAPSHOT_HEADER, a FeatureLevel record, SNAPSHOT_FOOTER.
	p = filepath.Join(fixtureRoot, "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/bootstrap.checkpoint")
	data = readFile(t, p)
	r = NewReader(bytes.NewReader(data), int64(len(data)), p, ReaderOptions{BaseOffset: -1})
	var types []string
	for r.Next() {
		recs, err := r.Records()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if r.Batch().Control() {
				ct, err := ParseControlKey(rec.Key)
				if err != nil {
					t.Fatal(err)
				}
				types = append(types, ct.String())
			} else {
				types = append(types, "data")
			}
		}
	}
	if got := strings.Join(types, ","); got != "SNAPSHOT_HEADER,data,SNAPSHOT_FOOTER" || r.Err() != nil {
		t.Fatalf("bootstrap records %s, err %v", got, r.Err())
	}
}
