package inspect

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// updateGoldens rewrites testdata/golden from the current output:
//
//	go test ./internal/inspect/ -run TestInspectGolden -update
var updateGoldens = flag.Bool("update", false, "rewrite testdata/golden/* from the current output")

// fixtureRoot holds files written by real Kafka brokers (read-only; see its
// CATALOG.md). Tests use it by a relative path so outputs hold no absolute
// paths; cmd/segvault reaches it by the same relative path, so the goldens
// serve both.
const fixtureRoot = "../../../shared/fixtures/kafka-real"

func fixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(fixtureRoot, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	return p
}

// h23Print prints files as `segvault inspect ARGS FILES...` does: the same
// flags (--json, --records, --print-data) mapped to Options.
func h23Print(t testing.TB, args, files []string) (stdout, stderr string, err error) {
	t.Helper()
	var o Options
	for _, a := range args {
		switch a {
		case "--json":
			o.JSON = true
		case "--records":
			o.Records = true
		case "--print-data":
			o.Records, o.Data = true, true
		default:
			t.Fatalf("unknown flag %s", a)
		}
	}
	var out, errb bytes.Buffer
	pr := NewPrinter(&out, &errb, o)
	for _, f := range files {
		if err := pr.File(fixture(t, f)); err != nil {
			return out.String(), errb.String(), err
		}
	}
	return out.String(), errb.String(), nil
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

// TestInspectGolden prints real broker files and compares the output with
// testdata/golden (-update rewrites them). cmd/segvault's
// TestH23InspectCLIMatchesGoldens checks the CLI prints the same bytes.
func TestInspectGolden(t *testing.T) {
	cases := []struct {
		golden string
		args   []string
		files  []string
	}{
		// LZ4 batches with broker (LogAppendTime) timestamps, records with data.
		{"lz4-logappendtime.txt", []string{"--print-data"}, []string{lz4AppendTime}},
		{"lz4-logappendtime.jsonl", []string{"--json", "--print-data"}, []string{lz4AppendTime}},
		// A transactional batch and its COMMIT marker, with the partition's
		// index, time index and producer snapshot (coordinator epoch 0).
		{"txn-commit.txt", []string{"--records"}, []string{txnPartition + "00000000000000000000.log",
			txnPartition + "00000000000000000000.index", txnPartition + "00000000000000000000.timeindex", txnPartition + "00000000000000000002.snapshot"}},
		{"txn-commit.jsonl", []string{"--json", "--records"}, []string{txnPartition + "00000000000000000000.log",
			txnPartition + "00000000000000000000.index", txnPartition + "00000000000000000000.timeindex", txnPartition + "00000000000000000002.snapshot"}},
		// A 15-entry time index and its offset index.
		{"offsets-indexes.txt", nil, []string{offsetsPart + "00000000000000000000.timeindex", offsetsPart + "00000000000000000000.index"}},
		{"offsets-indexes.jsonl", []string{"--json"}, []string{offsetsPart + "00000000000000000000.timeindex", offsetsPart + "00000000000000000000.index"}},
		// A producer snapshot with three idempotent producers.
		{"producer-snapshot.txt", nil, []string{producersSnap}},
		{"producer-snapshot.jsonl", []string{"--json"}, []string{producersSnap}},
		// KRaft snapshots: batch headers, and the bootstrap snapshot's
		// SnapshotHeader/SnapshotFooter control records.
		{"kraft-checkpoint.txt", nil, []string{kraftSnapshot}},
		{"kraft-checkpoint.jsonl", []string{"--json"}, []string{kraftSnapshot}},
		{"kraft-bootstrap.txt", []string{"--records"}, []string{kraftBootstrap}},
		{"kraft-bootstrap.jsonl", []string{"--json", "--records"}, []string{kraftBootstrap}},
		// The small text files of a partition and a log dir.
		{"side-files.txt", nil, []string{biggerBrain + "lsx1-0/leader-epoch-checkpoint", biggerBrain + "lsx1-0/partition.metadata",
			biggerBrain + "meta.properties", biggerBrain + "replication-offset-checkpoint"}},
		{"side-files.jsonl", []string{"--json"}, []string{biggerBrain + "lsx1-0/leader-epoch-checkpoint", biggerBrain + "lsx1-0/partition.metadata",
			biggerBrain + "meta.properties", biggerBrain + "replication-offset-checkpoint"}},
	}
	// cases.json lists the cases for cmd/segvault's CLI check of the same goldens.
	type jsonCase struct {
		Golden string   `json:"golden"`
		Args   []string `json:"args"`
		Files  []string `json:"files"`
	}
	var list []jsonCase
	for _, tc := range cases {
		list = append(list, jsonCase{tc.golden, tc.args, tc.files})
	}
	listJSON, _ := json.MarshalIndent(list, "", "  ")
	listPath := filepath.Join("testdata", "golden", "cases.json")
	if *updateGoldens {
		if err := os.WriteFile(listPath, append(listJSON, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if got, err := os.ReadFile(listPath); err != nil || string(got) != string(listJSON)+"\n" {
		t.Errorf("%s is not the case table (run with -update): %v", listPath, err)
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, err := h23Print(t, tc.args, tc.files)
			if err != nil || errOut != "" {
				t.Fatalf("%v, stderr:\n%s", err, errOut)
			}
			if strings.Contains(out, "/work/") || strings.Contains(out, `"/`) || strings.Contains(out, " /") {
				t.Fatalf("output holds an absolute path:\n%s", out)
			}
			if strings.HasSuffix(tc.golden, ".jsonl") {
				for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Fatalf("line %d is not a JSON object: %v\n%s", i+1, err, line)
					}
					if m["file"] == nil || m["type"] == nil {
						t.Fatalf("line %d lacks file or type: %s", i+1, line)
					}
				}
			}
			golden := filepath.Join("testdata", "golden", tc.golden)
			if *updateGoldens {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", golden, lineDiff(string(want), out))
			}
		})
	}
}

// lineDiff shows the first differing line.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(same lines)"
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain text {\"a\":1}":           `plain text {"a":1}`,
		"é ü 日本":                         "é ü 日本",
		"a\x1b[31mred\x1b[0m":            `a\x1b[31mred\x1b[0m`,
		"back\\slash":                    `back\\slash`,
		"nl\ntab\tcr\r":                  `nl\ntab\tcr\r`,
		"\xff\xfe\x00":                   `\xff\xfe\x00`,
		"rtl\u202eoverride":              `rtl\u202eoverride`,
		"del\x7f":                        `del\x7f`,
		string([]byte{0xef, 0xbf, 0xbd}): `\ufffd`,
	} {
		if got := escape([]byte(in)); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
