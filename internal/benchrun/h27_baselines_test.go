package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segvault/segvault/archive"
)

func TestH27CPUFlags(t *testing.T) {
	got := cpuFlags(" fpu vme sse4_2 avx2 sha_ni aes")
	want := map[string]bool{"sha_ni": true, "avx2": true, "avx512f": false}
	if len(got) != len(want) {
		t.Fatalf("cpuFlags = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("cpuFlags[%s] = %v, want %v", k, got[k], v)
		}
	}
	m := machine{CPUFlags: got}
	if s := m.flagsText(); s != "CPU flags: sha_ni yes, avx2 yes, avx512f no" {
		t.Errorf("flagsText = %q", s)
	}
}

func TestH27TargetsInTableAndJSON(t *testing.T) {
	r := &report{StepSeconds: map[string]float64{}}
	r.add(row{ID: "a", Name: "tput", Value: 200, Unit: "MiB/s", Baseline: "rclone", BaselineValue: 100, Better: "higher", Target: atLeast(1.6)})
	r.add(row{ID: "b", Name: "cpu", Value: 3, Unit: "s/GiB", Baseline: "floor", BaselineValue: 2, Better: "lower", Target: atMost(1.15), Stage: "one core"})
	r.add(row{ID: "c", Name: "rss", Value: 70, Unit: "MiB", Baseline: "put", BaselineValue: 20, Better: "lower", Target: valueAtMost(64)})
	r.add(row{ID: "d", Name: "rss2", Value: 40, Unit: "MiB", Target: valueAtMost(64)})
	if !r.Rows[0].Target.Met || r.Rows[1].Target.Met || r.Rows[2].Target.Met || !r.Rows[3].Target.Met {
		t.Fatalf("met = %v %v %v %v, want true false false true", r.Rows[0].Target.Met, r.Rows[1].Target.Met, r.Rows[2].Target.Met, r.Rows[3].Target.Met)
	}
	md := r.markdown()
	for _, want := range []string{"| Target (issue 14) |", "| ≥ 1.60× met |", "| ≤ 1.15× **not met** |", "| ≤ 64.0 MiB **not met** |", "| ≤ 64.0 MiB met |", "**Slowest stage:** one core", "Issue 14 targets: 2 of 4 met in this run.", "- #2 cpu []: 1.50× of floor, target ≤ 1.15× **not met**"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"target":{"on":"ratio","op":"\u003e=","value":1.6,"met":true}`)) || !bytes.Contains(js, []byte(`"slowest_stage":"one core"`)) {
		t.Errorf("json lacks the target or stage: %s", js)
	}
}

// The floor compresses compressible files chunk by chunk, and keeps a file
// as it is after chunk 0 when chunk 0 does not compress (the v2 auto rule).
func TestH27OnePassFloor(t *testing.T) {
	dir := t.TempDir()
	chunk := int(archive.DefaultChunkSize)
	text := bytes.Repeat([]byte(`{"user":"u-0001","event":"click","ts":1733270400}`+"\n"), (2*chunk+12345)/50+1)[:2*chunk+12345]
	noise := make([]byte, chunk+777)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	pt, pn, pe := filepath.Join(dir, "text"), filepath.Join(dir, "noise"), filepath.Join(dir, "empty")
	for p, b := range map[string][]byte{pt: text, pn: noise, pe: nil} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fl, err := newOnePassFloor()
	if err != nil {
		t.Fatal(err)
	}
	r, err := fl.file(pt, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Raw != int64(len(text)) || r.Zstd != r.Raw || r.Stored <= 0 || r.Stored > r.Raw/10 {
		t.Errorf("text: %+v, want raw %d all compressed to < 10%%", r, len(text))
	}
	r, err = fl.file(pn, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Raw != int64(len(noise)) || r.Zstd != int64(chunk) || r.Stored != r.Raw {
		t.Errorf("noise, auto: %+v, want raw %d, only chunk 0 (%d) through zstd, stored = raw", r, len(noise), chunk)
	}
	r, err = fl.file(pn, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Zstd != r.Raw || r.Stored <= r.Raw*9/10 {
		t.Errorf("noise, forced: %+v, want every byte through zstd", r)
	}
	tot, err := fl.files([]string{pt, pn, pe}, true)
	if err != nil {
		t.Fatal(err)
	}
	if tot.Raw != int64(len(text)+len(noise)) {
		t.Errorf("files: raw %d, want %d", tot.Raw, len(text)+len(noise))
	}
	if _, err := fl.file(filepath.Join(dir, "missing"), true); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: err = %v, want one naming the file", err)
	}
}

// findPrevious picks the newest result file of the same mode holding the row.
func TestH27FindPrevious(t *testing.T) {
	dir := t.TempDir()
	write := func(name, mode string, rows ...*row) {
		js, err := json.Marshal(report{Mode: mode, Date: name, Rows: rows})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), js, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	id := "archive.throughput." + dsSmall
	write("20260101T000000Z-quick.json", "quick", &row{ID: id, Value: 10, Ratio: 0.5})
	write("20260102T000000Z-quick.json", "quick", &row{ID: id, Value: 20, Ratio: 0.7})
	write("20260103T000000Z-quick.json", "quick", &row{ID: "other", Value: 1})
	write("20260104T000000Z-full.json", "full", &row{ID: id, Value: 99, Ratio: 0.9})
	p := findPrevious(dir, "quick", id)
	if !p.Found || p.File != "20260102T000000Z-quick.json" || p.Row.Ratio != 0.7 {
		t.Errorf("findPrevious = %+v, want 20260102T000000Z-quick.json ratio 0.7", p)
	}
	if p := findPrevious(dir, "full", "nope"); p.Found {
		t.Errorf("findPrevious of a missing row = %+v", p)
	}
}

func TestH27Compare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rows ...*row) string {
		js, err := json.Marshal(report{Mode: "quick", Date: name, Rows: rows})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, js, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.json", &row{ID: "x", Name: "tput", Dataset: "d", Value: 50, Unit: "MiB/s", Baseline: "put", BaselineValue: 100, Ratio: 0.5}, &row{ID: "gone", Name: "old"})
	b := write("b.json", &row{ID: "x", Name: "tput", Dataset: "d", Value: 90, Unit: "MiB/s", Baseline: "put", BaselineValue: 100, Ratio: 0.9, Target: &target{On: "ratio", Op: ">=", Value: 0.9, Met: true}}, &row{ID: "new", Name: "fresh"})
	md, err := compareReports(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md, "| tput | d | put | 50.0 MiB/s | 0.50× | 90.0 MiB/s | 0.90× | 1.80× | ≥ 0.90× met |") || strings.Contains(md, "fresh") || strings.Contains(md, "old") {
		t.Errorf("compare:\n%s", md)
	}
	if _, err := compareReports(filepath.Join(dir, "missing.json"), b); err == nil {
		t.Error("compare of a missing file: no error")
	}
}
