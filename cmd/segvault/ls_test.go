package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// TestLsGapMarkers archives a real (stopped) broker's log dir with the agent,
// adds gap markers as the agent writes them for segments Kafka deleted
// before they were archived, and lists the archive.
func TestLsGapMarkers(t *testing.T) {
	tmp := t.TempDir()
	logs := filepath.Join(tmp, "kafka-logs")
	copyTree(t, fixture(t, biggerBrain), logs)
	bucketDir := filepath.Join(tmp, "bucket")
	bucket := "file://" + bucketDir
	out, errOut, code := runSegvault(t, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--bucket", bucket, "--state-dir", filepath.Join(tmp, "state"))
	if code != 0 || !strings.Contains(out, "1 segments archived") {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}

	const cluster = "1PEpoQSRThK-PWVK_M7NCg" // meta.properties of the fixture
	store, err := uploader.NewLocal(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	layout := archive.NewLayout("")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	putGap := func(topic string, partition int32, topicID string, base, next int64) string {
		t.Helper()
		g := archive.GapMarker{Format: "segvault.gap", Version: 1, ClusterID: cluster, BrokerID: 0, Topic: topic, Partition: partition,
			TopicID: topicID, BaseOffset: base, NextBase: next, Bytes: 1 << 20, Reason: "deleted by Kafka before it was archived", At: at}
		data, _ := json.MarshalIndent(g, "", " ")
		key := layout.GapKey(archive.SegmentRef{Cluster: cluster, Topic: topic, Partition: partition, TopicID: topicID, BaseOffset: base, Broker: 0})
		if err := store.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		return key
	}
	// lsx1-0 holds offsets 0..13; a later segment 14..19 was lost.
	lostKey := putGap("lsx1", 0, "nigi0dJNRASJVYh5eRn0Vg", 14, 20)
	// Every segment of another partition was lost: it is listed anyway.
	putGap("gone", 3, "AAAAAAAAAAAAAAAAAAAAAg", 500, 700)

	out, errOut, code = runSegvault(t, "ls", "--json", "--bucket", bucket)
	if code != 0 {
		t.Fatalf("ls --json: exit %d\n%s\n%s", code, out, errOut)
	}
	var parts []lsPartition
	if err := json.Unmarshal([]byte(out), &parts); err != nil {
		t.Fatalf("ls --json does not parse: %v\n%s", err, out)
	}
	if len(parts) != 2 {
		t.Fatalf("%d partitions, want 2:\n%s", len(parts), out)
	}
	gone, lsx := parts[0], parts[1] // sorted by topic
	if lsx.Topic != "lsx1" || lsx.Segments != 1 || lsx.First != 0 || lsx.Last != 13 || lsx.Bytes != 1398 || len(lsx.Lost) != 1 {
		t.Fatalf("lsx1-0: %+v", lsx)
	}
	if l := lsx.Lost[0]; l.BaseOffset != 14 || l.NextBase != 20 || l.Key != lostKey || !l.At.Equal(at) || l.Reason == "" || l.Bytes != 1<<20 {
		t.Errorf("lost segment: %+v", l)
	}
	if gone.Topic != "gone" || gone.Partition != 3 || gone.Segments != 0 || len(gone.Lost) != 1 || gone.Lost[0].BaseOffset != 500 || gone.TopicID != "AAAAAAAAAAAAAAAAAAAAAg" {
		t.Errorf("gone-3: %+v", gone)
	}

	out, _, code = runSegvault(t, "ls", "--bucket", bucket)
	if code != 0 {
		t.Fatalf("ls: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "GAPS") {
		t.Fatalf("ls:\n%s", out)
	}
	if !strings.Contains(lines[1], "gone-3") || !strings.HasSuffix(lines[1], "lost:500..699") {
		t.Errorf("gone-3 row: %q", lines[1])
	}
	if !strings.Contains(lines[2], "lsx1-0") || !strings.Contains(lines[2], "0..13") || !strings.HasSuffix(lines[2], "lost:14..19") {
		t.Errorf("lsx1-0 row: %q", lines[2])
	}

	// --topic filters gap markers too.
	out, _, _ = runSegvault(t, "ls", "--json", "--topic", "^lsx", "--bucket", bucket)
	if strings.Contains(out, "gone") {
		t.Errorf("--topic ^lsx lists gone-3:\n%s", out)
	}
	// A marker of an unknown format is reported, not trusted.
	data := []byte(`{"format":"something.else","version":1}`)
	key := layout.GapKey(archive.SegmentRef{Cluster: cluster, Topic: "lsx1", Partition: 0, TopicID: "nigi0dJNRASJVYh5eRn0Vg", BaseOffset: 30, Broker: 1})
	if err := store.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runSegvault(t, "ls", "--bucket", bucket)
	if code != 0 || !strings.Contains(errOut, key) || strings.Contains(out, "30..") {
		t.Errorf("unknown marker: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestGapsText(t *testing.T) {
	p := lsPartition{}
	p.Gaps = append(p.Gaps, gapOf(100, 200), gapOf(300, 400))
	p.Lost = []lsLost{{BaseOffset: 100, NextBase: 150}, {BaseOffset: 150, NextBase: 200}, {BaseOffset: 900, NextBase: 950}, {BaseOffset: 1000}}
	if got, want := gapsText(p), "100..199(lost),300..399,lost:900..949,lost:1000..?"; got != want {
		t.Errorf("gapsText = %q, want %q", got, want)
	}
}

func gapOf(from, to int64) lsGap {
	return lsGap{First: from, Last: to - 1, Reason: "segments missing from the archive"}
}
