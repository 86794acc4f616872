package inspect

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// h23VerifyCases are VerifyPath goldens over real broker files, stored as
// `segvault verify --json` prints them (cmd/segvault's
// TestH23VerifyCLIMatchesGoldens runs the CLI over verify-cases.json).
var h23VerifyCases = []struct {
	Golden string   `json:"golden"`
	Deep   bool     `json:"deep"`
	Paths  []string `json:"paths"`
}{
	// A whole log dir: root checkpoints, meta.properties, one partition.
	{"verify-logdir.json", false, []string{biggerBrain}},
	// A partition with a transaction, its indexes and producer snapshot.
	{"verify-txn-partition.json", true, []string{txnPartition}},
	// A __consumer_offsets partition, deep; an index given on its own.
	{"verify-offsets.json", true, []string{offsetsPart, offsetsPart + "00000000000000000000.timeindex"}},
	// KRaft snapshots (SnapshotHeader/Footer checked) and a LZ4 log.
	{"verify-kraft-lz4.json", true, []string{kraftSnapshot, kraftBootstrap, lz4AppendTime}},
}

func TestH23VerifyPathGolden(t *testing.T) {
	listJSON, _ := json.MarshalIndent(h23VerifyCases, "", "  ")
	listPath := filepath.Join("testdata", "golden", "verify-cases.json")
	if *updateGoldens {
		if err := os.WriteFile(listPath, append(listJSON, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if got, err := os.ReadFile(listPath); err != nil || string(got) != string(listJSON)+"\n" {
		t.Errorf("%s is not the case table (run with -update): %v", listPath, err)
	}
	for _, tc := range h23VerifyCases {
		t.Run(tc.Golden, func(t *testing.T) {
			results := []FileResult{}
			for _, p := range tc.Paths {
				r, err := VerifyPath(fixture(t, p), tc.Deep)
				if err != nil {
					t.Fatal(err)
				}
				results = append(results, r...)
			}
			if len(results) == 0 {
				t.Fatal("nothing checked")
			}
			for _, r := range results {
				if r.Status != "ok" {
					t.Errorf("%s: %s %s", r.Path, r.Status, r.Detail)
				}
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(results); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", tc.Golden)
			if *updateGoldens {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if buf.String() != string(want) {
				t.Errorf("differs from %s (run with -update to accept):\n%s", golden, lineDiff(string(want), buf.String()))
			}
		})
	}
}

// TestH23VerifyPathNothingAndErrors: a non-Kafka file checks nothing; a
// missing path is an error; a damaged rolled .log is corrupt and its
// indexes, which cannot be compared with it, get their structure checked
// only.
func TestH23VerifyPathNothingAndErrors(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, []byte("hello"), 0o644)
	if r, err := VerifyPath(other, false); err != nil || len(r) != 0 {
		t.Errorf("non-Kafka file: %v %v", r, err)
	}
	if _, err := VerifyPath(filepath.Join(dir, "missing"), false); err == nil {
		t.Error("missing path: no error")
	}
	part := filepath.Join(dir, "t-0")
	os.MkdirAll(part, 0o755)
	for _, n := range []string{"00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex", "00000000000000000002.snapshot"} {
		data, err := os.ReadFile(fixture(t, txnPartition+n))
		if err != nil {
			t.Fatal(err)
		}
		if n == "00000000000000000000.log" {
			data[30] ^= 1 // inside the first batch's CRC-covered bytes
		}
		os.WriteFile(filepath.Join(part, n), data, 0o644)
	}
	// A later segment makes 0 a rolled segment, whose indexes are checked.
	os.WriteFile(filepath.Join(part, "00000000000000000100.log"), nil, 0o644)
	r, err := VerifyPath(part, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range r {
		got[filepath.Base(x.Path)] = x.Status
	}
	if got["00000000000000000000.log"] != "corrupt" || got["00000000000000000000.index"] != "ok" || got["00000000000000000100.log"] != "ok" || got["00000000000000000002.snapshot"] != "ok" {
		t.Errorf("%v", r)
	}
}
