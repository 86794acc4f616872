package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// h6Run runs the segvault binary against the MinIO bucket.
func h6Run(t *testing.T, srv *miniotest.Server, bucket string, args ...string) (string, string, int) {
	t.Helper()
	args = append(args, "--bucket", "s3://"+bucket, "--s3-endpoint", srv.Endpoint(), "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1")
	cmd := exec.Command(segvaultBin(t), args...)
	cmd.Env = append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// h6Manifests lists the segment manifests of b by key.
func h6Manifests(t *testing.T, b uploader.Bucket) map[string]*archive.SegmentManifest {
	t.Helper()
	ctx := context.Background()
	out := map[string]*archive.SegmentManifest{}
	if err := b.List(ctx, "", func(oi uploader.ObjectInfo) error {
		if _, k, ok := archive.GuessKey(oi.Key); !ok || !k.IsManifest() {
			return nil
		}
		data, err := uploader.ReadAll(ctx, b, oi.Key, archive.MaxManifestSize)
		if err != nil {
			return err
		}
		m, err := archive.DecodeSegmentManifest(oi.Key, data)
		if err != nil {
			return err
		}
		out[oi.Key] = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

type h6LsRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Segments  int    `json:"segments"`
	Lost      []struct {
		BaseOffset int64 `json:"base_offset"`
	} `json:"lost_segments"`
	Bad []struct {
		Key   string `json:"key"`
		Error string `json:"error"`
	} `json:"bad_manifests"`
}

// TestH6LsBadManifest archives a real broker's log dir to MinIO with the
// agent, overwrites one committed manifest with garbage and adds another
// unparseable manifest.json: ls reports both by key (stderr and --json),
// lists every other partition and exits 1.
func TestH6LsBadManifest(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	b := s3Bucket2(t, srv, name)
	logs := copyTree(t, "../../../shared/fixtures/kafka-real/NikhilDighe9975__kafka_setup/kafka-logs")
	out, errOut, code := h6Run(t, srv, name, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--state-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	mans := h6Manifests(t, b)
	var good []h6LsRow
	out, errOut, code = h6Run(t, srv, name, "ls", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &good) != nil || len(good) < 10 {
		t.Fatalf("ls of the intact archive: exit %d\n%s\n%s", code, out, errOut)
	}
	// The victim: __consumer_offsets-7 (the only one with records).
	var victim, cluster string
	for k, m := range mans {
		cluster = m.ClusterID
		if m.Topic == "__consumer_offsets" && m.Partition == 7 {
			victim = k
		}
	}
	if victim == "" {
		t.Fatalf("no manifest of __consumer_offsets-7 among %d", len(mans))
	}
	srv.CorruptObject(t, name, victim, func(d []byte) []byte { return []byte("{not json") })
	extra := archive.NewLayout("").Root() + cluster + "/topics/h6-bogus/0/AAAAAAAAAAAAAAAAAAAAAg/segments/00000000000000000000/0-1/" + archive.ManifestName
	if err := b.Create(context.Background(), extra, strings.NewReader("\x00\x01garbage"), 9, uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	out, errOut, code = h6Run(t, srv, name, "ls")
	if code != 1 || !strings.Contains(errOut, victim) || !strings.Contains(errOut, extra) {
		t.Errorf("ls with 2 bad manifests: exit %d, want 1 and both keys on stderr\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "__consumer_offsets-8 ") || !strings.Contains(out, "__consumer_offsets-0 ") {
		t.Errorf("ls does not list the intact partitions:\n%s", out)
	}
	out, errOut, code = h6Run(t, srv, name, "ls", "--json")
	var rows []h6LsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 1 {
		t.Fatalf("ls --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	bad := map[string]bool{}
	listed := 0
	for _, r := range rows {
		for _, x := range r.Bad {
			if x.Error == "" {
				t.Errorf("bad manifest %s without an error", x.Key)
			}
			bad[x.Key] = true
		}
		if r.Segments > 0 {
			listed++
		}
	}
	if !bad[victim] || !bad[extra] || len(bad) != 2 {
		t.Errorf("ls --json bad_manifests %v, want %s and %s", bad, victim, extra)
	}
	if listed != len(good)-1 {
		t.Errorf("ls --json lists %d partitions with segments, want %d", listed, len(good)-1)
	}
}

// TestH6LsPrefersDataOverGapMarker: a false "lost" gap marker for a segment
// the agent later archived (same broker, same base) does not make ls report
// it lost: the data wins.
func TestH6LsPrefersDataOverGapMarker(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	b := s3Bucket2(t, srv, name)
	logs := copyTree(t, "../../../shared/fixtures/kafka-real/BiggerBrain__kafka/data")
	out, errOut, code := h6Run(t, srv, name, "--log-level", "warn", "agent", "--once", "--include-active", "--settle-time", "0s", "--listen", "",
		"--log-dirs", logs, "--state-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("agent --once: exit %d\n%s\n%s", code, out, errOut)
	}
	var m *archive.SegmentManifest
	for _, x := range h6Manifests(t, b) {
		m = x
	}
	if m == nil {
		t.Fatal("nothing archived")
	}
	g := archive.GapMarker{Format: "segvault.gap", Version: 1, ClusterID: m.ClusterID, BrokerID: m.BrokerID, Topic: m.Topic, Partition: m.Partition,
		TopicID: m.TopicID, BaseOffset: m.BaseOffset, NextBase: m.Summary.LastOffset + 1, Bytes: 1398, Reason: "open: permission denied",
		At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	data, _ := json.Marshal(g)
	key := archive.NewLayout("").GapKey(archive.SegmentRef{Cluster: m.ClusterID, Topic: m.Topic, Partition: m.Partition, TopicID: m.TopicID,
		BaseOffset: m.BaseOffset, Broker: m.BrokerID})
	if err := b.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = h6Run(t, srv, name, "ls")
	if code != 0 || strings.Contains(out, "lost") || !strings.HasSuffix(strings.TrimSpace(out), " -") {
		t.Errorf("ls with a false gap marker for archived data: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = h6Run(t, srv, name, "ls", "--json")
	var rows []h6LsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Segments != 1 || len(rows[0].Lost) != 0 {
		t.Errorf("ls --json with a false gap marker: %v\n%s", err, out)
	}
}
