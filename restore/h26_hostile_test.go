package restore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// h26HostileArchive packs three captures of a real segment and returns the
// bucket root, the manifest keys and the segment's bytes.
func h26HostileArchive(t *testing.T) (string, *uploader.Local, []string, []byte) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	data := h26Read(t, filepath.Join(h26Fixtures, "mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-configs-0/00000000000000000000.log"))
	bounds := h26Bounds(t, data, 0)
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	layout := archive.NewLayout("")
	var keys []string
	for i, r := range [][2]int64{{0, bounds[15]}, {bounds[15], bounds[30]}, {bounds[30], int64(len(data))}} {
		keys = append(keys, h26Pack(t, b, layout, "c1", 1, int64(i+1), t0.Add(time.Duration(i)*time.Minute), 4096,
			h26Cap{Topic: "configs", TopicID: h26Topic, Data: data, From: r[0], To: r[1]}))
	}
	return root, b, keys, data
}

// h26Edit rewrites a tail manifest in place.
func h26Edit(t *testing.T, root, key string, edit func(m *archive.TailManifest)) {
	t.Helper()
	path := filepath.Join(root, filepath.FromSlash(key))
	m, err := archive.DecodeTailManifest(key, h26Read(t, path))
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, _ := json.Marshal(m)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// h26Outside lists what a restore left next to its target (nothing may be
// written outside it).
func h26Outside(t *testing.T, parent, target string) {
	t.Helper()
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if filepath.Join(parent, e.Name()) != target {
			t.Errorf("restore wrote %s outside its target", e.Name())
		}
	}
}

// TestH26TailHostile: captures that fail a check are named with their
// object and the failed check, never written, never steer a path.
func TestH26TailHostile(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		edit  func(t *testing.T, root string, keys []string)
		check string // in the plan's error (Bad with LeaveOutBad)
		run   string // in the restore's error (the plan passes)
	}{
		{name: "bad chunk crc", run: "chunk stored crc32c", edit: func(t *testing.T, root string, keys []string) {
			pack := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(keys[1], ".json")+".pack"))
			data := h26Read(t, pack)
			data[len(data)/2] ^= 0xff
			os.WriteFile(pack, data, 0o644)
		}},
		{name: "chunk range past the pack", check: "chunk range", edit: func(t *testing.T, root string, keys []string) {
			h26Edit(t, root, keys[1], func(m *archive.TailManifest) { m.Captures[0].Chunks[0].Offset = m.PackSize })
		}},
		{name: "chunk in another object", check: "chunk key", edit: func(t *testing.T, root string, keys []string) {
			h26Edit(t, root, keys[1], func(m *archive.TailManifest) {
				m.Captures[0].Chunks[0].Key = strings.TrimSuffix(keys[0], ".json") + ".pack"
			})
		}},
		{name: "path traversal topic", check: "topic name", edit: func(t *testing.T, root string, keys []string) {
			h26Edit(t, root, keys[2], func(m *archive.TailManifest) { m.Captures[0].Topic = "../../../etc" })
		}},
		{name: "offsets past the segment", check: "offsets", edit: func(t *testing.T, root string, keys []string) {
			h26Edit(t, root, keys[2], func(m *archive.TailManifest) { m.Captures[0].LastOffset = 1 << 40 })
		}},
		{name: "pack of another manifest", check: "pack key", edit: func(t *testing.T, root string, keys []string) {
			h26Edit(t, root, keys[2], func(m *archive.TailManifest) { m.PackKey = strings.TrimSuffix(keys[0], ".json") + ".pack" })
		}},
		{name: "bytes not what the chain says", run: "tail capture chain sha256", edit: func(t *testing.T, root string, keys []string) {
			h26Edit(t, root, keys[2], func(m *archive.TailManifest) {
				c := &m.Captures[0]
				c.SHA256 = strings.Repeat("ab", 32)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, b, keys, _ := h26HostileArchive(t)
			tc.edit(t, root, keys)
			parent := t.TempDir()
			target := filepath.Join(parent, "restored")
			src := restore.NewSource(b, archive.DecodeOptions{})
			_, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
			if tc.check != "" {
				if err == nil || !strings.Contains(err.Error(), tc.check) || !strings.Contains(err.Error(), "tail manifest v2/c1/brokers/1/tails/") {
					t.Fatalf("plan: %v, want an error naming the tail manifest and %q", err, tc.check)
				}
				t.Log(err)
				// Left out (LeaveOutBad): reported, the rest planned.
				plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1, LeaveOutBad: true}, 2)
				if err != nil || len(plan.Bad) != 1 || !strings.Contains(plan.Bad[0].Err, tc.check) {
					t.Fatalf("plan with LeaveOutBad: %v, bad %+v", err, plan)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
			if err == nil || !strings.Contains(err.Error(), tc.run) || !errors.Is(err, uploader.ErrIntegrity) || !strings.Contains(err.Error(), "v2/c1/brokers/1/tails/") {
				t.Fatalf("restore: %v, want an integrity error naming the object and %q", err, tc.run)
			}
			t.Log(err)
			if _, err := os.Stat(filepath.Join(target, "configs-0")); err == nil {
				t.Error("a partition that failed verification was put into place")
			}
			if _, err := os.Stat(filepath.Join(target, restore.TempDirName, "configs-0")); err == nil {
				t.Error("bytes that failed verification kept in the temp dir")
			}
			h26Outside(t, parent, target)
		})
	}
}

// TestH26TailBadBatch: a capture whose chunks and chain are consistent but
// whose bytes are not valid batches (a batch CRC broken before packing) is
// caught batch by batch and never put into place.
func TestH26TailBadBatch(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	data := h26Read(t, filepath.Join(h26Fixtures, "BiggerBrain__kafka/data/lsx1-0/00000000000000000000.log"))
	bad := append([]byte(nil), data...)
	bounds := h26Bounds(t, data, 0)
	bad[bounds[5]+70] ^= 0x55 // inside batch 5's records
	h26Pack(t, b, archive.NewLayout(""), "c1", 1, 1, time.Now(), 4096,
		h26Cap{Topic: "lsx1", TopicID: h26Topic, Data: bad, From: 0, To: int64(len(bad)), Hostile: true, Offsets: [2]int64{0, 13}})
	parent := t.TempDir()
	target := filepath.Join(parent, "restored")
	_, _, err = h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
	if err == nil || !strings.Contains(err.Error(), "crc") || !strings.Contains(err.Error(), "00000000000000000000.log") {
		t.Fatalf("restore: %v, want a batch CRC error naming the file", err)
	}
	t.Log(err)
	if _, err := os.Stat(filepath.Join(target, "lsx1-0")); err == nil {
		t.Error("a partition that failed verification was put into place")
	}
	h26Outside(t, parent, target)
}

// TestH26TailChainBreak: a capture in the middle of the chain is missing
// (its manifest deleted): the restore keeps the longest valid prefix, up to
// the capture before the break, and reports the rest as not restorable,
// naming the capture whose predecessor is missing.
func TestH26TailChainBreak(t *testing.T) {
	root, b, keys, data := h26HostileArchive(t)
	if err := os.Remove(filepath.Join(root, filepath.FromSlash(keys[1]))); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	plan, rep, err := h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	bounds := h26Bounds(t, data, 0)
	got := h26Read(t, filepath.Join(target, "configs-0", "00000000000000000000.log"))
	if string(got) != string(data[:bounds[15]]) {
		t.Errorf("restored %d bytes, want the prefix before the break (%d)", len(got), bounds[15])
	}
	pp := h26Part(plan, "configs", 0)
	found := false
	for _, g := range pp.Gaps {
		found = found || strings.Contains(g.Reason, "chain break") && strings.Contains(g.Reason, keys[2]) && g.To == 54
	}
	if !found || pp.Tail.Unusable != 1 {
		t.Errorf("gaps %+v tail %+v: want the rest reported as not restorable", pp.Gaps, pp.Tail)
	}
	if len(rep.Gaps) != 1 || !strings.Contains(rep.Gaps[0], "chain break") {
		t.Errorf("report gaps %q", rep.Gaps)
	}
}

// TestH26TailAbandonMarker: the agent's abandon marker (a tail manifest
// with no captures and no pack, for a capture interrupted before its
// commit) is not a bad object and commits nothing.
func TestH26TailAbandonMarker(t *testing.T) {
	root, b, keys, data := h26HostileArchive(t)
	h26Edit(t, root, keys[2], func(m *archive.TailManifest) { m.Captures, m.PackKey, m.PackSize = []archive.TailCapture{}, "", 0 })
	os.Remove(filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(keys[2], ".json")+".pack")))
	target := filepath.Join(t.TempDir(), "restored")
	plan, _, err := h26Restore(t, b, restore.Selection{Broker: -1}, target, -1)
	if err != nil || len(plan.Bad) > 0 {
		t.Fatalf("restore: %v, bad %+v", err, plan)
	}
	bounds := h26Bounds(t, data, 0)
	if got := h26Read(t, filepath.Join(target, "configs-0", "00000000000000000000.log")); string(got) != string(data[:bounds[30]]) {
		t.Errorf("restored %d bytes, want the two committed captures (%d)", len(got), bounds[30])
	}
}
