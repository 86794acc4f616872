package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segvault/segvault/index"
)

// fixtureRoot holds files written by real Kafka brokers (read-only; see its
// CATALOG.md). Tests use it by a relative path so outputs hold no absolute
// paths.
const fixtureRoot = "../../../shared/fixtures/kafka-real"

func fixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(fixtureRoot, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	return p
}

// runSegvault runs the CLI in-process, as main does.
func runSegvault(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"segvault"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// copyTree copies a (read-only) fixture dir to dst with writable modes.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			return err
		}
		return os.Chtimes(target, info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// copyFile copies one fixture file into dir (writable) and returns its path.
func copyFile(t testing.TB, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	lz4AppendTime  = "mscaldas2012__kafka-connect-spooldir/kafka-data/_confluent-controlcenter-5-1-2-1-monitoring-trigger-event-rekey-0/00000000000000000000.log"
	txnPartition   = "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/_confluent-ksql-default__command_topic-0/"
	kraftSnapshot  = "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/__cluster_metadata-0/00000000000000007364-0000000001.checkpoint"
	kraftBootstrap = "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/bootstrap.checkpoint"
	offsetsPart    = "NikhilDighe9975__kafka_setup/kafka-logs/__consumer_offsets-12/"
	producersSnap  = "DonaldY__kafka-2.7.1/kafka-logs/myTopic-0/00000000000000000038.snapshot"
	biggerBrain    = "BiggerBrain__kafka/data/"
)

func TestInspectRecordsContent(t *testing.T) {
	out, _, code := runSegvault(t, "inspect", "--records", fixture(t, txnPartition+"00000000000000000000.log"))
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"baseOffset: 0 lastOffset: 0 count: 1 baseSequence: 0 lastSequence: 0 producerId: 0 producerEpoch: 0 partitionLeaderEpoch: 0 isTransactional: true isControl: false",
		"| offset: 0 CreateTime: 1728561475261 keySize: 37 valueSize: 7418 sequence: 0 headerKeys: []\n",
		"| offset: 1 CreateTime: 1728561475581 keySize: 4 valueSize: 6 sequence: -1 headerKeys: [] endTxnMarker: COMMIT coordinatorEpoch: 0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Without --records only batch headers are printed.
	out, _, _ = runSegvault(t, "inspect", fixture(t, txnPartition+"00000000000000000000.log"))
	if strings.Contains(out, "| offset:") {
		t.Errorf("records printed without --records:\n%s", out)
	}
	// --print-data implies --records; control records carry no data.
	out, _, _ = runSegvault(t, "inspect", "--print-data", fixture(t, txnPartition+"00000000000000000000.log"))
	if !strings.Contains(out, "sequence: 0 headerKeys: [] key: ") || !strings.Contains(out, " payload: {") {
		t.Errorf("--print-data lacks key and payload:\n%.600s", out)
	}
	if strings.Contains(out, "coordinatorEpoch: 0 key:") || strings.Contains(out, "coordinatorEpoch: 0 payload:") {
		t.Errorf("control record printed with data:\n%s", out)
	}
}

// TestInspectNonConsecutive: a compacted segment's offset gaps are listed on
// stderr, as DumpLogSegments does, without failing.
func TestInspectNonConsecutive(t *testing.T) {
	p := fixture(t, "DonaldY__kafka-2.7.1/kafka-logs/__consumer_offsets-39/00000000000000000000.log")
	out, errOut, code := runSegvault(t, "inspect", "--records", p)
	if code != 0 || strings.Count(out, "| offset: ") != 3 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.HasPrefix(errOut, "Non-consecutive offsets in "+p+"\n  ") || !strings.Contains(errOut, " is followed by ") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if _, errOut, _ := runSegvault(t, "inspect", p); errOut != "" {
		t.Errorf("offset gaps reported without --records:\n%s", errOut)
	}
}

func TestInspectTxnIndex(t *testing.T) {
	dir := t.TempDir()
	data, err := index.EncodeTxnIndex([]index.AbortedTxn{
		{ProducerID: 7, FirstOffset: 100, LastOffset: 105, LastStableOffset: 100},
		{ProducerID: 9, FirstOffset: 101, LastOffset: 110, LastStableOffset: 111},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "00000000000000000100.txnindex")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runSegvault(t, "inspect", p)
	want := "Dumping " + p + "\n" +
		"version: 0 producerId: 7 firstOffset: 100 lastOffset: 105 lastStableOffset: 100\n" +
		"version: 0 producerId: 9 firstOffset: 101 lastOffset: 110 lastStableOffset: 111\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d, stderr %q, output:\n%s\nwant:\n%s", code, errOut, out, want)
	}
	out, _, _ = runSegvault(t, "inspect", "--json", p)
	var first struct {
		Type             string `json:"type"`
		ProducerID       int64  `json:"producer_id"`
		LastStableOffset int64  `json:"last_stable_offset"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || first.Type != "txn_index" || first.ProducerID != 7 || first.LastStableOffset != 100 {
		t.Fatalf("JSON %q: %+v %v", out, first, err)
	}
	// A torn entry: the whole entries are printed, then the error.
	if err := os.WriteFile(p, data[:len(data)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runSegvault(t, "inspect", p)
	if code != 1 || !strings.Contains(out, "producerId: 7") || !strings.Contains(errOut, p) {
		t.Fatalf("torn .txnindex: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestInspectCorruptLog(t *testing.T) {
	dir := t.TempDir()
	p := copyFile(t, fixture(t, lz4AppendTime), dir)
	data, _ := os.ReadFile(p)
	// Batches are 96, 96, ... bytes: flip a CRC-covered byte of the third.
	data[192+40] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"inspect"}, {"inspect", "--records"}, {"inspect", "--json", "--records"}} {
		out, errOut, code := runSegvault(t, append(args, p)...)
		if code != 1 {
			t.Fatalf("%v: exit %d, want 1", args, code)
		}
		if n := strings.Count(out, `"type":"batch"`) + strings.Count(out, "baseOffset: "); n != 2 {
			t.Errorf("%v: %d batches printed, want the 2 valid ones:\n%s", args, n, out)
		}
		if !strings.Contains(errOut, p+": byte 192 ") || !strings.Contains(errOut, "crc") {
			t.Errorf("%v: stderr does not name the file, byte and check:\n%s", args, errOut)
		}
	}
	// A torn tail: the valid batches, then the error, exit 1.
	if err := os.WriteFile(p, data[:192+50], 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runSegvault(t, "inspect", p)
	if code != 1 || strings.Count(out, "baseOffset: ") != 2 || !strings.Contains(errOut, p+": byte 192 ") || !strings.Contains(errOut, "truncated") {
		t.Fatalf("torn tail: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestInspectCorruptSideFiles(t *testing.T) {
	dir := t.TempDir()
	// A time index whose third entry goes back in time.
	ti := copyFile(t, fixture(t, offsetsPart+"00000000000000000000.timeindex"), dir)
	data, _ := os.ReadFile(ti)
	copy(data[24:32], make([]byte, 8)) // entry 2's timestamp := 0
	os.WriteFile(ti, data, 0o644)
	out, errOut, code := runSegvault(t, "inspect", ti)
	if code != 1 || strings.Count(out, "timestamp: ") != 2 || !strings.Contains(errOut, ti+": entry 2 at byte 24") {
		t.Fatalf("corrupt .timeindex: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// A producer snapshot with a flipped byte fails its CRC.
	sn := copyFile(t, fixture(t, producersSnap), dir)
	data, _ = os.ReadFile(sn)
	data[len(data)-1] ^= 1
	os.WriteFile(sn, data, 0o644)
	_, errOut, code = runSegvault(t, "inspect", sn)
	if code != 1 || !strings.Contains(errOut, sn+": byte 2: crc check failed") {
		t.Fatalf("corrupt .snapshot: exit %d, stderr:\n%s", code, errOut)
	}
	// An index of 9 bytes: the whole entry, then the error.
	ix := copyFile(t, fixture(t, offsetsPart+"00000000000000000000.index"), dir)
	data, _ = os.ReadFile(ix)
	os.WriteFile(ix, data[:9], 0o644)
	out, errOut, code = runSegvault(t, "inspect", ix)
	if code != 1 || out != "Dumping "+ix+"\noffset: 60 position: 4388\n" || !strings.Contains(errOut, ix) {
		t.Fatalf("torn .index: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// A later good file is still printed, and the exit status stays 1.
	out, _, code = runSegvault(t, "inspect", ix, fixture(t, producersSnap))
	if code != 1 || !strings.Contains(out, "producerId: 4003") {
		t.Fatalf("corrupt then good file: exit %d:\n%s", code, out)
	}
}

func TestInspectUsage(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "notes.txt")
	os.WriteFile(unknown, []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect"}, "give at least one file"},
		{[]string{"inspect", unknown}, unknown + ": not a Kafka file"},
		{[]string{"inspect", filepath.Join(dir, "00000000000000000000.log")}, "no such file"},
		{[]string{"inspect", dir}, "is a directory"},
		// A bad argument stops everything before any output.
		{[]string{"inspect", fixture(t, producersSnap), unknown}, "not a Kafka file"},
	} {
		out, errOut, code := runSegvault(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

func TestInspectHelp(t *testing.T) {
	out, _, code := runSegvault(t, "inspect", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--records", "--deep-iteration", "--print-data", "--json", ".timeindex", ".txnindex", ".snapshot", "leader-epoch-checkpoint"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect --help lacks %q", want)
		}
	}
}
