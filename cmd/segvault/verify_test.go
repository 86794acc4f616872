package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segvault/segvault/segment"
)

// nikhilLogDir is a real clean-shutdown log dir: __consumer_offsets-12 has a
// rolled segment (00000000000000000000, with a 14-entry .index and a
// 15-entry .timeindex) and an active one (00000000000000000862).
const nikhilLogDir = "NikhilDighe9975__kafka_setup/kafka-logs"

// copyLogDir copies the fixture log dir into a temp dir (fixtures are
// read-only) and returns it.
func copyLogDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	copyTree(t, fixture(t, nikhilLogDir), dir)
	return dir
}

func verifyJSON(t *testing.T, args ...string) ([]fileResult, int) {
	t.Helper()
	out, errOut, code := runSegvault(t, append([]string{"verify", "--json"}, args...)...)
	var res []fileResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify --json output does not parse: %v\n%s\nstderr:\n%s", err, out, errOut)
	}
	return res, code
}

func statusOf(t *testing.T, res []fileResult, suffix string) fileResult {
	t.Helper()
	for _, r := range res {
		if strings.HasSuffix(r.Path, suffix) {
			return r
		}
	}
	t.Fatalf("no result for %s", suffix)
	return fileResult{}
}

func TestVerifyCleanLogDir(t *testing.T) {
	dir := copyLogDir(t)
	for _, deep := range []bool{false, true} {
		args := []string{"verify", dir}
		if deep {
			args = []string{"verify", "--deep", dir}
		}
		out, errOut, code := runSegvault(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		if !strings.Contains(out, "STATUS  KIND") || !strings.Contains(out, ": 0 corrupt, 0 unreadable") {
			t.Errorf("%v: no summary table:\n%s", args, out)
		}
	}
	res, code := verifyJSON(t, "--deep", dir)
	if code != 0 || len(res) < 100 {
		t.Fatalf("exit %d, %d results", code, len(res))
	}
	r := statusOf(t, res, "__consumer_offsets-12/00000000000000000000.log")
	if r.Status != "ok" || r.Kind != "log" || r.Batches != 147 || r.Records != 862 || r.Bytes != 64548 {
		t.Errorf("rolled segment: %+v", r)
	}
	for _, suffix := range []string{"meta.properties", "recovery-point-offset-checkpoint", "nikhilDemo-0/00000000000000000003.snapshot",
		"nikhilDemo-0/partition.metadata", "nikhilDemo-0/leader-epoch-checkpoint"} {
		if r := statusOf(t, res, suffix); r.Status != "ok" {
			t.Errorf("%s: %+v", suffix, r)
		}
	}
	// A partition dir and single files work too.
	part := filepath.Join(dir, "__consumer_offsets-12")
	for _, p := range []string{part, filepath.Join(part, "00000000000000000000.log"), filepath.Join(part, "00000000000000000000.index"),
		filepath.Join(part, "00000000000000000000.timeindex")} {
		if out, _, code := runSegvault(t, "verify", p); code != 0 {
			t.Errorf("verify %s: exit %d\n%s", p, code, out)
		}
	}
}

// batchCRC rewrites a v2 batch's CRC after its bytes were changed.
func batchCRC(b []byte, pos int) {
	end := pos + 12 + int(binary.BigEndian.Uint32(b[pos+8:]))
	binary.BigEndian.PutUint32(b[pos+17:], segment.CRC32C(b[pos+21:end]))
}

func mutate(t *testing.T, p string, f func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, f(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFlippedByte(t *testing.T) {
	dir := copyLogDir(t)
	log := filepath.Join(dir, "__consumer_offsets-12", "00000000000000000000.log")
	// The .index's first entry points at the batch at byte 4388; flip a
	// byte of its timestamp (covered by the CRC).
	mutate(t, log, func(b []byte) []byte { b[4388+30] ^= 0x40; return b })
	out, _, code := runSegvault(t, "verify", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "CORRUPT: "+log+": byte 4388 ") || !strings.Contains(out, "crc check failed") {
		t.Errorf("output does not name the file, byte position and check:\n%s", out)
	}
	if !strings.Contains(out, "1 corrupt, 0 unreadable") {
		t.Errorf("summary:\n%s", out)
	}
	res, code := verifyJSON(t, dir)
	if r := statusOf(t, res, "__consumer_offsets-12/00000000000000000000.log"); code != 1 || r.Status != "corrupt" || !strings.Contains(r.Detail, "byte 4388") {
		t.Errorf("JSON: exit %d, %+v", code, r)
	}
	// The file on its own, and its partition dir.
	for _, p := range []string{log, filepath.Dir(log)} {
		if out, _, code := runSegvault(t, "verify", p); code != 1 || !strings.Contains(out, "byte 4388") {
			t.Errorf("verify %s: exit %d\n%s", p, code, out)
		}
	}
}

func TestVerifyDeepOnly(t *testing.T) {
	dir := copyLogDir(t)
	log := filepath.Join(dir, "__consumer_offsets-12", "00000000000000000000.log")
	// Change the first record's length varint by one and fix the CRC: the
	// batch framing is intact, only record parsing can tell.
	mutate(t, log, func(b []byte) []byte { b[61] ^= 0x02; batchCRC(b, 0); return b })
	if out, _, code := runSegvault(t, "verify", log); code != 0 {
		t.Fatalf("shallow: exit %d, want 0:\n%s", code, out)
	}
	out, _, code := runSegvault(t, "verify", "--deep", log)
	if code != 1 || !strings.Contains(out, log+": byte 0 ") {
		t.Fatalf("--deep: exit %d, want 1 naming byte 0:\n%s", code, out)
	}
}

func TestVerifyCorruptIndexEntry(t *testing.T) {
	dir := copyLogDir(t)
	idx := filepath.Join(dir, "__consumer_offsets-12", "00000000000000000000.index")
	// Entry 3's position (bytes 28..32) moved one byte: not a batch start.
	mutate(t, idx, func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[28:], binary.BigEndian.Uint32(b[28:])+1)
		return b
	})
	for _, p := range []string{dir, filepath.Dir(idx), idx} {
		out, _, code := runSegvault(t, "verify", p)
		if code != 1 {
			t.Fatalf("verify %s: exit %d, want 1:\n%s", p, code, out)
		}
		if !strings.Contains(out, "00000000000000000000.index: entry 3 at byte 28: position check failed") {
			t.Errorf("verify %s: output does not name the index entry:\n%s", p, out)
		}
	}
}

func TestVerifyTornTail(t *testing.T) {
	dir := copyLogDir(t)
	part := filepath.Join(dir, "__consumer_offsets-12")
	// The last (active) segment may be mid-append: reported, exit 0.
	active := filepath.Join(part, "00000000000000000862.log")
	mutate(t, active, func(b []byte) []byte { return b[:len(b)-10] })
	for _, p := range []string{dir, part, active} {
		out, _, code := runSegvault(t, "verify", p)
		if code != 0 {
			t.Fatalf("torn active segment, verify %s: exit %d, want 0:\n%s", p, code, out)
		}
		if !strings.Contains(out, "TRUNCATED") || !strings.Contains(out, active+": byte 0 ") || !strings.Contains(out, "0 corrupt") {
			t.Errorf("verify %s: truncation not reported:\n%s", p, out)
		}
	}
	res, _ := verifyJSON(t, part)
	if r := statusOf(t, res, "00000000000000000862.log"); r.Status != "truncated" {
		t.Errorf("JSON: %+v", r)
	}
	// A rolled segment is complete: a torn tail there is corruption.
	rolled := filepath.Join(part, "00000000000000000000.log")
	mutate(t, rolled, func(b []byte) []byte { return b[:len(b)-10] })
	for _, p := range []string{dir, part, rolled} {
		out, _, code := runSegvault(t, "verify", p)
		if code != 1 || !strings.Contains(out, "CORRUPT: "+rolled) {
			t.Errorf("torn rolled segment, verify %s: exit %d, want 1:\n%s", p, code, out)
		}
	}
}

func TestVerifyUsageAndIOErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"verify"},
		{"verify", filepath.Join(dir, "missing")},
		{"verify", "--no-such-flag", dir},
	} {
		if out, errOut, code := runSegvault(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s%s", args, code, out, errOut)
		}
	}
	// An unreadable file is an I/O error: exit 2 (unless running as root,
	// who reads it anyway).
	p := filepath.Join(dir, "meta.properties")
	os.WriteFile(p, []byte("version=0\nbroker.id=1\n"), 0o000)
	if f, err := os.Open(p); err == nil {
		f.Close()
		t.Log("running as root: skipping the unreadable-file case")
		return
	}
	if out, _, code := runSegvault(t, "verify", p); code != 2 || !strings.Contains(out, "ERROR") {
		t.Errorf("unreadable file: exit %d, want 2:\n%s", code, out)
	}
}

func TestVerifyKRaftAndSnapshots(t *testing.T) {
	dir := t.TempDir()
	ck := copyFile(t, fixture(t, kraftSnapshot), dir)
	res, code := verifyJSON(t, ck, fixture(t, kraftBootstrap), fixture(t, producersSnap))
	if code != 0 || len(res) != 3 || res[0].Records != 165 || res[1].Batches != 3 {
		t.Fatalf("exit %d: %+v", code, res)
	}
	// Drop the SnapshotFooter batch (the last 75 bytes): every batch is valid,
	// the snapshot is not.
	mutate(t, ck, func(b []byte) []byte { return b[:len(b)-75] })
	out, _, code := runSegvault(t, "verify", ck)
	if code != 1 || !strings.Contains(out, "footer") {
		t.Fatalf("snapshot without footer: exit %d:\n%s", code, out)
	}
}
