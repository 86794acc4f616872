package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// h24V1Dir holds an archive written by segvault's format-v1 code (commit
// 5c3e111) and the outputs that binary gave for it; see its README.md. The
// store was committed without xattrs (git keeps none), so the Local store
// reads it without object metadata.
const h24V1Dir = "../../archive/testdata/v1"

// h24V1Case is one prefix of the v1 store: how to read it and where its
// segments came from.
type h24V1Case struct {
	prefix      string
	encrypted   bool
	restoreArgs []string
	// fixtureDir is the fixture log dir the archive was written from, and
	// logs the restored files that must equal the fixture's byte for byte.
	fixtureDir string
	logs       []string
}

var h24V1Cases = []h24V1Case{
	{
		prefix:      "plain",
		restoreArgs: []string{"--broker", "1", "--whole-broker"},
		fixtureDir:  "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data",
		logs: []string{
			"_confluent-ksql-default__command_topic-0/00000000000000000000.log",
			"_confluent-ksql-default__command_topic-0/00000000000000000002.snapshot",
			"__transaction_state-44/00000000000000000000.log",
			"_schemas-0/00000000000000000000.log",
			"__cluster_metadata-0/00000000000000007364-0000000001.checkpoint",
			"__cluster_metadata-0/00000000000000021265-0000000006.checkpoint",
			"__cluster_metadata-0/00000000000000060500-0000000025.checkpoint",
			"bootstrap.checkpoint",
			"meta.properties",
		},
	},
	{
		prefix:     "enc",
		encrypted:  true,
		fixtureDir: "BiggerBrain__kafka/data",
		logs:       []string{"lsx1-0/00000000000000000000.log"},
	},
}

// h24CopyV1 copies the committed v1 archive to a temp dir (nothing may write
// into testdata) and returns the copy's path.
func h24CopyV1(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "v1")
	copyTree(t, h24V1Dir, dst)
	return dst
}

// h24StoreArgs are the options that select one prefix of the copied store.
func h24StoreArgs(dir string, c h24V1Case) []string {
	args := []string{"--bucket", "file://" + filepath.Join(dir, "store"), "--prefix", c.prefix}
	if c.encrypted {
		args = append(args, "--encryption-key-file", filepath.Join(dir, "test-only.key"))
	}
	return args
}

// h24SameJSON compares a command's JSON output with its golden by value
// (key order and indentation aside, nothing is normalized): every value the
// v1-era command printed must be printed the same. Fields added since (an
// object key the golden lacks, e.g. ls's restorable_offset) are allowed and
// logged: new information is not a different reading of the archive.
func h24SameJSON(t *testing.T, golden string, got string) {
	t.Helper()
	wantData, err := os.ReadFile(filepath.Join(h24V1Dir, "golden", golden))
	if err != nil {
		t.Fatal(err)
	}
	var want, have any
	if err := json.Unmarshal(wantData, &want); err != nil {
		t.Fatalf("golden %s does not parse: %v", golden, err)
	}
	if err := json.Unmarshal([]byte(got), &have); err != nil {
		t.Fatalf("output for %s does not parse as JSON: %v\n%s", golden, err, got)
	}
	var added []string
	if !h24Covers(want, have, "$", &added) {
		t.Errorf("output differs from golden %s\n--- got:\n%s\n--- want:\n%s", golden, got, wantData)
	}
	if len(added) > 0 {
		t.Logf("%s: fields added since v1 (allowed): %s", golden, strings.Join(added, ", "))
	}
}

// h24Covers reports whether have holds every value of want at the same
// place (objects may carry more keys; arrays and scalars must match
// exactly), appending the paths of the extra keys to added.
func h24Covers(want, have any, path string, added *[]string) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok || !h24Covers(wv, hv, path+"."+k, added) {
				return false
			}
		}
		for k := range h {
			if _, ok := w[k]; !ok {
				*added = append(*added, path+"."+k)
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !h24Covers(w[i], h[i], fmt.Sprintf("%s[%d]", path, i), added) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(want, have)
	}
}

// h24Listing lists every regular file under root as "<size> <sha256> <path>"
// lines sorted by path (the format of golden/restore-*.txt).
func h24Listing(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file (%v)", rel, d.Type())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		lines = append(lines, fmt.Sprintf("%d %s %s", len(data), hex.EncodeToString(sum[:]), filepath.ToSlash(rel)))
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", root, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// h24ListingDiff names every path whose line differs between two listings
// ("" when they are equal).
func h24ListingDiff(got, want string) string {
	index := func(s string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if i := strings.LastIndexByte(l, ' '); i >= 0 {
				m[l[i+1:]] = l
			}
		}
		return m
	}
	g, w := index(got), index(want)
	var diffs []string
	for p, wl := range w {
		switch gl, ok := g[p]; {
		case !ok:
			diffs = append(diffs, "missing: "+wl)
		case gl != wl:
			diffs = append(diffs, "differs: got "+gl+", want "+wl)
		}
	}
	for p, gl := range g {
		if _, ok := w[p]; !ok {
			diffs = append(diffs, "extra: "+gl)
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}

// h24Restore restores one prefix of the copied store into a new dir.
func h24Restore(t *testing.T, dir string, c h24V1Case) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restore-"+c.prefix)
	args := append([]string{"restore", "--target", target}, c.restoreArgs...)
	args = append(args, h24StoreArgs(dir, c)...)
	out, errOut, code := runSegvault(t, args...)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	return target
}

// TestH24V1ArchiveLs lists each prefix of the v1 archive.
func TestH24V1ArchiveLs(t *testing.T) {
	dir := h24CopyV1(t)
	for _, c := range h24V1Cases {
		t.Run(c.prefix, func(t *testing.T) {
			out, errOut, code := runSegvault(t, append([]string{"ls", "--json"}, h24StoreArgs(dir, c)...)...)
			if code != 0 {
				t.Fatalf("ls --json: exit %d\n%s\n%s", code, out, errOut)
			}
			h24SameJSON(t, "ls-"+c.prefix+".json", out)
		})
	}
}

// TestH24V1ArchiveScrub re-reads every object of the v1 archive.
func TestH24V1ArchiveScrub(t *testing.T) {
	dir := h24CopyV1(t)
	for _, c := range h24V1Cases {
		t.Run(c.prefix, func(t *testing.T) {
			out, errOut, code := runSegvault(t, append([]string{"verify", "--scrub", "--json"}, h24StoreArgs(dir, c)...)...)
			if code != 0 {
				t.Fatalf("verify --scrub --json: exit %d\n%s\n%s", code, out, errOut)
			}
			h24SameJSON(t, "scrub-"+c.prefix+".json", out)
		})
	}
}

// TestH24V1ArchiveRestore restores each prefix of the v1 archive: every file
// written (name, size, SHA-256) matches what the v1 binary restored, and the
// archived files equal the broker's originals byte for byte.
func TestH24V1ArchiveRestore(t *testing.T) {
	dir := h24CopyV1(t)
	for _, c := range h24V1Cases {
		t.Run(c.prefix, func(t *testing.T) {
			target := h24Restore(t, dir, c)
			want, err := os.ReadFile(filepath.Join(h24V1Dir, "golden", "restore-"+c.prefix+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			if d := h24ListingDiff(h24Listing(t, target), string(want)); d != "" {
				t.Errorf("restored files differ from golden restore-%s.txt:\n%s", c.prefix, d)
			}
			for _, rel := range c.logs {
				orig, err := os.ReadFile(fixture(t, filepath.Join(c.fixtureDir, rel)))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(target, rel))
				if err != nil {
					t.Fatalf("restored file: %v", err)
				}
				if !bytes.Equal(got, orig) {
					t.Errorf("%s: restored %d bytes differ from the fixture's %d", rel, len(got), len(orig))
				}
			}
		})
	}
}

// TestH24V1ArchiveRestoreDetectsChange proves the restore comparison catches
// one changed byte: it flips a byte of a restored .log and expects the
// listing to differ from the golden at exactly that file.
func TestH24V1ArchiveRestoreDetectsChange(t *testing.T) {
	dir := h24CopyV1(t)
	c := h24V1Cases[1]
	target := h24Restore(t, dir, c)
	want, err := os.ReadFile(filepath.Join(h24V1Dir, "golden", "restore-"+c.prefix+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	if d := h24ListingDiff(h24Listing(t, target), string(want)); d != "" {
		t.Fatalf("restore differs before the change:\n%s", d)
	}
	p := filepath.Join(target, c.logs[0])
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d := h24ListingDiff(h24Listing(t, target), string(want))
	if !strings.HasPrefix(d, "differs: ") || strings.Count(d, "\n") != 0 || !strings.Contains(d, c.logs[0]) {
		t.Errorf("one changed byte in %s: diff %q, want one line naming it", c.logs[0], d)
	}
}
