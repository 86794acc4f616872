package index

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/segvault/segvault/segment"
)

// Goldens written by Apache Kafka itself: testdata/kafka-recovery/<name>/
// holds .log files produced by franz-go against kfake, and the .index,
// .timeindex, .txnindex, producer snapshots and leader-epoch-checkpoint that
// Kafka 3.9's LogSegment.recover wrote for them (Recover.java). They cover
// what the real-broker fixtures lack: ABORT markers and .txnindex, open
// transactions across segments, non-empty snapshots with transactions,
// every codec, leader epoch changes, small index intervals.
//
// -update-goldens regenerates the logs with kfake and the goldens with the
// Kafka jars in $SEGVAULT_KAFKA_LIBS (e.g. .tools/kafka/3.9.2/libs, see
// internal/kafkatest/pom.xml); it needs java and javac.
var updateGoldens = flag.Bool("update-goldens", false, "regenerate testdata/kafka-recovery with kfake and Kafka's own recovery code")

const goldenDir = "testdata/kafka-recovery"

type goldenCase struct {
	name     string
	interval int
	gen      func(t testing.TB) (log []byte, splits []int64)
}

var goldenCases = []goldenCase{
	{"plain", 4096, func(t testing.TB) ([]byte, []int64) { return genPlain(t, 150).log, nil }},
	{"plain-interval-700", 700, func(t testing.TB) ([]byte, []int64) { return genPlain(t, 60).log, []int64{25} }},
	{"batched", 1024, func(t testing.TB) ([]byte, []int64) { return genBatched(t).log, nil }},
	{"txn", 1024, func(t testing.TB) ([]byte, []int64) { s := genTxn(t); return s.log, s.split }},
	{"epochs", 200, func(t testing.TB) ([]byte, []int64) { return genEpochs(t).log, []int64{10} }},
}

// goldenSegments lists a case dir's .log files by base offset.
func goldenSegments(t testing.TB, dir string) []int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindLog && n.Suffix == "" {
			bases = append(bases, n.BaseOffset)
		}
	}
	slices.Sort(bases)
	if len(bases) == 0 {
		t.Fatalf("%s: no segments", dir)
	}
	return bases
}

func TestKafkaRecoveryGoldens(t *testing.T) {
	if *updateGoldens {
		regenerateGoldens(t)
	}
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			dir := filepath.Join(goldenDir, gc.name)
			ps := NewProducerState()
			epochs := &EpochCache{}
			var open map[int64]int64
			aborted := 0
			for _, base := range goldenSegments(t, dir) {
				name := segment.FormatName(base, segment.KindLog)
				log := readFile(t, filepath.Join(dir, name))
				stem := filepath.Join(dir, strings.TrimSuffix(name, ".log"))
				res, err := Rebuild(bytes.NewReader(log), int64(len(log)), name,
					RebuildOptions{BaseOffset: base, IndexIntervalBytes: gc.interval, Producers: ps, LeaderEpochs: epochs})
				if err != nil {
					t.Fatal(err)
				}
				for ext, got := range map[string][]byte{".index": res.OffsetIndex, ".timeindex": res.TimeIndex, ".txnindex": res.TxnIndex} {
					want := readOpt(t, stem+ext)
					if ext == ".txnindex" && len(want) == 0 {
						want = nil // Kafka leaves an empty file when it never appended
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s%s: rebuilt %d bytes differ from Kafka's %d", name, ext, len(got), len(want))
					}
				}
				aborted += len(res.Aborted)
				// The OpenTxns chain (no ProducerState) gives the same .txnindex.
				alone, err := Rebuild(bytes.NewReader(log), int64(len(log)), name, RebuildOptions{BaseOffset: base, IndexIntervalBytes: gc.interval, OpenTxns: open})
				if err != nil || !bytes.Equal(alone.TxnIndex, res.TxnIndex) {
					t.Errorf("%s: OpenTxns chain: %v, txn index differs", name, err)
				}
				startOpen := open
				open = alone.OpenTxns
				// Kafka snapshots the producer state after each segment.
				snap := segment.FormatName(ps.EndOffset(), segment.KindSnapshot)
				if want := readFile(t, filepath.Join(dir, snap)); !bytes.Equal(EncodeProducerSnapshot(ps.Entries()), want) {
					ge := ps.Entries()
					we, _ := DecodeProducerSnapshot(snap, want)
					t.Errorf("%s: producer snapshot differs:\n got %+v\nwant %+v", snap, ge, we)
				}
				// And Kafka's files verify as reproducible.
				rep, err := VerifySegment(bytes.NewReader(log), int64(len(log)), name,
					SideFiles{Index: readOpt(t, stem+".index"), TimeIndex: readOpt(t, stem+".timeindex"), TxnIndex: readOpt(t, stem+".txnindex")},
					VerifyOptions{BaseOffset: base, IndexIntervalBytes: gc.interval, OpenTxns: startOpen})
				if err != nil || rep.Corrupt() || !rep.Index.Reproducible || !rep.TimeIndex.Reproducible {
					t.Errorf("%s: verify: %v %+v %+v", name, err, rep.Index, rep.TimeIndex)
				}
			}
			want := readFile(t, filepath.Join(dir, LeaderEpochCheckpointFile))
			if got := FormatLeaderEpochCheckpoint(epochs.Entries()); !bytes.Equal(got, want) {
				t.Errorf("leader-epoch-checkpoint: got %q want %q", got, want)
			}
			if gc.name == "batched" {
				log := readFile(t, filepath.Join(dir, "00000000000000000000.log"))
				sum, err := segment.Scan(bytes.NewReader(log), int64(len(log)), "b", segment.ScanOptions{})
				if err != nil || len(sum.Codecs) != 5 {
					t.Errorf("batched case codecs %v (%v), want all five", sum.Codecs, err)
				}
			}
			if gc.name == "txn" && aborted == 0 {
				t.Error("txn case has no aborted transactions")
			}
			if gc.name == "epochs" && len(epochs.Entries()) < 3 {
				t.Errorf("epochs case has epochs %v", epochs.Entries())
			}
		})
	}
}

func regenerateGoldens(t *testing.T) {
	libs := os.Getenv("SEGVAULT_KAFKA_LIBS")
	if libs == "" {
		t.Fatal("-update-goldens needs SEGVAULT_KAFKA_LIBS (a directory of Kafka 3.9 jars)")
	}
	classes := t.TempDir()
	javac := exec.Command("javac", "-cp", filepath.Join(libs, "*"), "-d", classes, filepath.Join(goldenDir, "Recover.java"))
	if out, err := javac.CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	for _, gc := range goldenCases {
		log, splits := gc.gen(t)
		dir := filepath.Join(goldenDir, gc.name)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		work := t.TempDir()
		args := []string{"-cp", filepath.Join(libs, "*") + string(os.PathListSeparator) + classes, "Recover", work, strconv.Itoa(gc.interval)}
		for _, seg := range splitLog(t, log, splits) {
			base := firstOffset(t, seg)
			if err := os.WriteFile(filepath.Join(work, segment.FormatName(base, segment.KindLog)), seg, 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, strconv.FormatInt(base, 10))
		}
		java := exec.Command("java", args...)
		if out, err := java.CombinedOutput(); err != nil {
			t.Fatalf("%s: java Recover: %v\n%s", gc.name, err, out)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(work)
		for _, e := range ents {
			b := readFile(t, filepath.Join(work, e.Name()))
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: regenerated %d files", gc.name, len(ents))
	}
}
