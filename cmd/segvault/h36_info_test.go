package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segvault/segvault/archive"
)

// TestH36InfoUndecodableTail: info exits 1 and names a tail manifest or a
// gap marker that does not decode, as it does a segment manifest (and as
// prune does): what it reports leaves them out.
func TestH36InfoUndecodableTail(t *testing.T) {
	l := archive.NewLayout("")
	for _, key := range []string{
		l.TailManifestKey("c1", 1, 7, "0000000000000007"),
		l.GapKey(archive.SegmentRef{Cluster: "c1", Topic: "kv", Partition: 0, TopicID: archive.NoTopicID, BaseOffset: 10, Broker: 1}),
	} {
		dir, _ := h29Archive(t, 1)
		p := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := h29Run("info", "--bucket", "file://"+dir); code != 1 || !strings.Contains(stderr, key) {
			t.Errorf("info with undecodable %s: exit %d, stderr %q", key, code, stderr)
		}
	}
}
