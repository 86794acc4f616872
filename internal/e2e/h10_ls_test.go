package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestH10LsSnapshotOnlyPartition: a partition the archive holds only KRaft
// snapshots of (the real KRaft fixture's __cluster_metadata-0, whose .log
// is absent) is listed truthfully: the broker whose snapshots they are,
// the bytes they take in the store, and no "-1..-1" offset range.
func TestH10LsSnapshotOnlyPartition(t *testing.T) {
	dir := copyTree(t, filepath.Join(fixturesRoot, "ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions", "kafka-data"))
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5ArchiveDir(t, dir, bucket, nil, "--include-active")
	out, errOut, code := h5Run(t, nil, "ls", "--bucket", bucket, "--json", "--topic", "^__cluster_metadata$")
	if code != 0 {
		t.Fatalf("ls --json: exit %d\n%s", code, errOut)
	}
	var parts []struct {
		Topic    string  `json:"topic"`
		Brokers  []int32 `json:"brokers"`
		Segments int     `json:"segments"`
		Bytes    int64   `json:"bytes"`
		Stored   int64   `json:"stored_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &parts); err != nil || len(parts) != 1 {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	p := parts[0]
	if p.Segments != 3 || len(p.Brokers) != 1 || p.Brokers[0] != 1 || p.Stored <= 0 || p.Stored >= p.Bytes {
		t.Errorf("__cluster_metadata-0: %+v, want 3 snapshots of broker [1] with their stored (compressed) bytes", p)
	}
	out, errOut, code = h5Run(t, nil, "ls", "--bucket", bucket, "--topic", "^__cluster_metadata$")
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s", code, errOut)
	}
	if strings.Contains(out, "-1..-1") || strings.Contains(out, " [] ") || !strings.Contains(out, "snapshot 60500") {
		t.Errorf("ls row of a snapshot-only partition, want broker [1] and 'snapshot 60500' (the newest snapshot):\n%s", out)
	}
}
