package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// ls shows a standby's divergence report (issue 16: a replica whose disk
// diverged is reported in ls): GAPS "diverged:b<broker>@<base>" and the
// report in full under diverged_replicas; a malformed report is named on
// standard error and left out of the listing, and verify --scrub fails on it.
func TestH40LsShowsDivergence(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "bucket")
	bucket := "file://" + dir
	out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", copyFixture(t, tmp), "--bucket", bucket, "--state-dir", filepath.Join(tmp, "state"))
	if code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	parts := lsJSON(t, bucket, 0)
	if len(parts) != 1 || len(parts[0].Diverged) != 0 {
		t.Fatalf("ls --json before any report: %+v", parts)
	}
	p := parts[0]
	ctx := context.Background()
	b, err := uploader.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := archive.ListAll(ctx, b, archive.NewLayout(""))
	if err != nil || len(cat.Versions) == 0 {
		t.Fatalf("catalog: %v, %d versions", err, len(cat.Versions))
	}
	v := cat.Versions[0]
	l := archive.NewLayout("")
	ref := archive.SegmentRef{Cluster: v.Key.Cluster, Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, BaseOffset: v.Key.BaseOffset, Broker: 7}
	rep := archive.DivergenceReport{Format: archive.DivergenceFormat, Version: archive.ManifestVersion, ClusterID: v.Key.Cluster, BrokerID: 7,
		Topic: p.Topic, Partition: p.Partition, TopicID: p.TopicID, BaseOffset: v.Key.BaseOffset, Bytes: 4096, ArchivedBroker: v.Key.Broker,
		ManifestKey: v.Manifest.Key, DataKey: v.Manifest.Key + ".log", FirstDiffStart: 0, FirstDiffEnd: 4096, DetectedAt: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		t.Helper()
		if err := b.Create(ctx, key, strings.NewReader(string(data)), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put(l.DivergenceKey(ref), data)

	parts = lsJSON(t, bucket, 0)
	if len(parts) != 1 || len(parts[0].Diverged) != 1 {
		t.Fatalf("ls --json: %+v, want one diverged replica", parts)
	}
	d := parts[0].Diverged[0]
	if d.Broker != 7 || d.BaseOffset != v.Key.BaseOffset || d.ArchivedBroker != v.Key.Broker || d.ManifestKey != v.Manifest.Key ||
		d.FirstDiffEnd != 4096 || d.Key != l.DivergenceKey(ref) {
		t.Fatalf("diverged_replicas %+v, want broker 7 at base %d against %s", d, v.Key.BaseOffset, v.Manifest.Key)
	}
	text, _, code := runSegvault(t, "ls", "--bucket", bucket)
	if want := "diverged:b7@" + strconv.FormatInt(v.Key.BaseOffset, 10); code != 0 || !strings.Contains(text, want) {
		t.Fatalf("ls (exit %d) does not show %q:\n%s", code, want, text)
	}
	if out, errOut, code := runSegvault(t, "verify", "--scrub", "--bucket", bucket); code != 0 {
		t.Fatalf("verify --scrub with an intact report: exit %d\n%s\n%s", code, out, errOut)
	}

	// A report that names another partition than its key, and one that
	// does not decode: named on standard error, left out; the scrub fails.
	bad := rep
	bad.Partition = p.Partition + 1
	ref2 := ref
	ref2.Broker = 8
	data2, _ := json.Marshal(bad)
	put(l.DivergenceKey(ref2), data2)
	ref3 := ref
	ref3.Broker = 9
	put(l.DivergenceKey(ref3), []byte(`{"format":"segvault.divergence","version":1,"first_diff_start":10,"first_diff_end":5}`))
	out, errOut, code = runSegvault(t, "ls", "--json", "--bucket", bucket)
	if code != 0 || !strings.Contains(errOut, l.DivergenceKey(ref2)) || !strings.Contains(errOut, l.DivergenceKey(ref3)) {
		t.Fatalf("ls with malformed reports: exit %d\nstderr: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &parts); err != nil || len(parts) != 1 || len(parts[0].Diverged) != 1 {
		t.Fatalf("ls --json with malformed reports: %v %+v", err, parts)
	}
	out, errOut, code = runSegvault(t, "verify", "--scrub", "--bucket", bucket)
	if code != 1 || !strings.Contains(out+errOut, l.DivergenceKey(ref3)) {
		t.Fatalf("verify --scrub with a report that does not decode: exit %d, want 1 naming %s\n%s\n%s", code, l.DivergenceKey(ref3), out, errOut)
	}
}

// copyFixture copies the BiggerBrain fixture log dir under tmp.
func copyFixture(t *testing.T, tmp string) string {
	t.Helper()
	logs := filepath.Join(tmp, "logs")
	copyTree(t, fixture(t, biggerBrain), logs)
	if _, err := os.Stat(filepath.Join(logs, "meta.properties")); err != nil {
		t.Fatal(err)
	}
	return logs
}

// lsJSON runs ls --json and decodes it, failing unless it exits with code.
func lsJSON(t *testing.T, bucket string, code int) []lsPartition {
	t.Helper()
	out, errOut, got := runSegvault(t, "ls", "--json", "--bucket", bucket)
	if got != code {
		t.Fatalf("ls --json: exit %d, want %d\n%s\n%s", got, code, out, errOut)
	}
	var parts []lsPartition
	if err := json.Unmarshal([]byte(out), &parts); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	return parts
}
