package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/segment"
)

// h29Archive writes a local v1 archive: per partition of topic kv, a
// version of base 0 archived 10 days ago and its rewrite 5 days ago. It
// returns the store dir and the old versions' manifest keys.
func h29Archive(t *testing.T, parts int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	l := archive.NewLayout("")
	var old []string
	for p := range int32(parts) {
		for i, age := range []time.Duration{10 * 24 * time.Hour, 5 * 24 * time.Hour} {
			created := time.Now().Add(-age).UTC()
			ref := archive.SegmentRef{Cluster: "c1", Topic: "kv", Partition: p, TopicID: archive.NoTopicID, Broker: 1, ContentID: fmt.Sprintf("%012d", i+1)}
			name := segment.FormatName(0, segment.KindLog)
			dk := l.DataKey(ref, name, "")
			data := bytes.Repeat([]byte{'x'}, 700)
			m := archive.SegmentManifest{Format: archive.SegmentManifestFormat, Version: archive.ManifestVersion, ClusterID: "c1", BrokerID: 1, Topic: "kv", Partition: p,
				TopicID: archive.NoTopicID, Kind: archive.KindSegment, NextSegmentBase: 10, ContentID: ref.ContentID, CreatedAt: created,
				Files:   []archive.FileRecord{{Name: name, Size: 700, Object: archive.StoredObject{Key: dk, Size: 700, Compression: archive.CompressionNone}}},
				Summary: &archive.SegmentSummary{FirstOffset: 0, LastOffset: 9, FirstTimestamp: created.UnixMilli(), MaxTimestamp: created.UnixMilli()}}
			js, _ := json.Marshal(m)
			for k, v := range map[string][]byte{dk: data, l.ManifestKey(ref): js} {
				p := filepath.Join(dir, filepath.FromSlash(k))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, v, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if i == 0 {
				old = append(old, l.ManifestKey(ref))
			}
		}
	}
	return dir, old
}

func h29Run(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(append([]string{"segvault"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestH29PruneCLI(t *testing.T) {
	dir, old := h29Archive(t, 3)
	bucket := "file://" + dir
	if _, stderr, code := h29Run("prune", "--bucket", bucket); code != 2 || !strings.Contains(stderr, "--keep-within is required") {
		t.Errorf("no --keep-within: exit %d, %s", code, stderr)
	}
	if _, stderr, code := h29Run("prune", "--bucket", bucket, "--keep-within", "7x"); code != 2 || !strings.Contains(stderr, "7x") {
		t.Errorf("bad --keep-within: exit %d, %s", code, stderr)
	}
	out, stderr, code := h29Run("prune", "--bucket", bucket, "--keep-within", "1d", "--dry-run")
	if code != 0 || strings.Count(out, "would delete segment-version") != 3 || !strings.Contains(out, "would delete 3 objects") || strings.Count(out, "pending segment-version") != 3 {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, k := range old {
		if _, err := os.Stat(filepath.Join(dir, k)); err != nil {
			t.Fatalf("dry run deleted %s", k)
		}
	}
	// The window from a config file (one file for the agent and prune).
	cfg := filepath.Join(t.TempDir(), "prune.yaml")
	os.WriteFile(cfg, []byte("bucket: "+bucket+"\nkeep-within: 1d\ndelete-delay: 0s\n"), 0o644)
	out, stderr, code = h29Run("prune", "--config", cfg, "--json")
	var rep struct {
		Deleted    []string `json:"deleted"`
		BytesFreed int64    `json:"bytes_freed"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || len(rep.Deleted) != 6 || rep.BytesFreed == 0 {
		t.Fatalf("prune: exit %d (%v)\n%s\n%s", code, err, out, stderr)
	}
	for _, k := range old {
		if _, err := os.Stat(filepath.Join(dir, k)); !os.IsNotExist(err) {
			t.Errorf("%s not deleted", k)
		}
	}
	t.Logf("CLI prune freed %d bytes", rep.BytesFreed)
	out, _, code = h29Run("prune", "--config", cfg)
	if code != 0 || !strings.Contains(out, "deleted 0 objects") {
		t.Errorf("second prune: exit %d\n%s", code, out)
	}
	if err := checkConfigKeys(cfg, agentFlags()); err != nil {
		t.Errorf("the agent refuses the prune keys of a shared config file: %v", err)
	}
}

func TestH29InfoCLI(t *testing.T) {
	dir, _ := h29Archive(t, 2)
	out, stderr, code := h29Run("info", "--bucket", "file://"+dir)
	if code != 0 || !strings.Contains(out, "cluster c1: restore window") || !strings.Contains(out, "kv") {
		t.Fatalf("info: exit %d\n%s\n%s", code, out, stderr)
	}
	out, _, code = h29Run("info", "--bucket", "file://"+dir, "--json")
	var info archive.ArchiveInfo
	if err := json.Unmarshal([]byte(out), &info); code != 0 || err != nil {
		t.Fatalf("info --json: exit %d, %v\n%s", code, err, out)
	}
	c := info.Clusters[0]
	if c.NewestOffset != 9 || len(c.Topics) != 1 || len(c.Topics[0].Partitions) != 2 || len(c.Brokers) != 1 || c.Brokers[0].RPO.D() < 5*24*time.Hour-time.Minute {
		t.Errorf("info: %+v", c)
	}
	// a manifest that does not decode: exit 1, named.
	var bad string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "manifest.json" && bad == "" {
			bad = p
		}
		return nil
	})
	os.WriteFile(bad, []byte("{"), 0o644)
	if _, stderr, code := h29Run("info", "--bucket", "file://"+dir); code != 1 || !strings.Contains(stderr, "manifest.json") {
		t.Errorf("undecodable manifest: exit %d, %s", code, stderr)
	}
	if _, stderr, code := h29Run("prune", "--bucket", "file://"+dir, "--keep-within", "1h", "--dry-run"); code != 1 || !strings.Contains(stderr, "does not decode or is not the object its key names: kept") {
		t.Errorf("prune with an undecodable manifest: exit %d, %s", code, stderr)
	}
}
