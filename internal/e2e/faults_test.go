package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// toxiproxy runs toxiproxy-server on loopback and manages one proxy.
type toxiproxy struct {
	api    string
	listen string
}

func startToxiproxy(t *testing.T, upstream string) *toxiproxy {
	t.Helper()
	bin := os.Getenv("SEGVAULT_TOXIPROXY_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", ".tools", "bin", "toxiproxy-server")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("toxiproxy-server not found (%v): run make tools", err)
		}
		t.Skipf("toxiproxy-server not found (%v): run make tools", err)
	}
	apiPort, proxyPort := freePort(t), freePort(t)
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", fmt.Sprint(apiPort))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tp := &toxiproxy{api: fmt.Sprintf("http://127.0.0.1:%d", apiPort), listen: fmt.Sprintf("127.0.0.1:%d", proxyPort)}
	waitFor(t, 20*time.Second, func() bool {
		resp, err := http.Get(tp.api + "/version")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	tp.call(t, "POST", "/proxies", map[string]any{"name": "s3", "listen": tp.listen, "upstream": upstream, "enabled": true})
	return tp
}

func (tp *toxiproxy) call(t *testing.T, method, path string, body any) {
	t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, tp.api+path, r)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("toxiproxy %s %s: %v", method, path, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("toxiproxy %s %s: %s", method, path, resp.Status)
	}
}

func (tp *toxiproxy) toxic(t *testing.T, name, typ, stream string, attrs map[string]any) {
	tp.call(t, "POST", "/proxies/s3/toxics", map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs})
}

func (tp *toxiproxy) clear(t *testing.T, names ...string) {
	for _, n := range names {
		tp.call(t, "DELETE", "/proxies/s3/toxics/"+n, nil)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestFaultInjection puts toxiproxy between the agent and MinIO and, while
// a live broker rolls 256 KiB segments, injects latency, connection resets
// in the middle of uploads (after 200 KB of a request), timeouts, a
// bandwidth limit, and restarts MinIO mid-upload. (Multipart uploads of
// segments over 64 MiB are covered by the uploader's MinIO tests.) When
// the faults stop, every segment is archived exactly once, every manifest
// verifies and none points at a missing or partial object.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	ctx := context.Background()
	srv := miniotest.Start(t)
	bucketName := srv.NewBucket(t)
	tp := startToxiproxy(t, srv.Endpoint())
	b, err := uploader.NewS3(uploader.S3Options{Endpoint: tp.listen, Bucket: bucketName, DisableTLS: true, PathStyle: true,
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey(), Region: "us-east-1", PartSize: 5 << 20, RequestRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	faulty := uploader.WithRetry(b, uploader.RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second})

	dir := filepath.Join(t.TempDir(), "kafka-logs")
	br, err := brokersim.Start(ctx, brokersim.Config{Dir: dir, NodeID: 6, SegmentBytes: 256 << 10, Seed: 6,
		Topics: []brokersim.TopicSpec{
			{Name: "small", Partitions: 2, Codec: "none", Records: 10},
			{Name: "big", Codec: "none", ValueBytes: 2000, Records: 10},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	metrics := agent.NewMetrics(nil)
	a := newAgent(t, faulty, agent.Config{LogDirs: []string{dir}, ScanInterval: 300 * time.Millisecond, SettleTime: 0, StagingBudget: 1 << 30}, metrics)
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx, nil) }()
	t.Cleanup(func() { stop(); <-done })

	rolled := rolledSet{}
	phase := func(name string, records int, inject func(), heal func()) {
		inject()
		for i := 0; i < 3; i++ {
			br.Append(ctx, "small", records)
			br.Append(ctx, "big", records/20)
			rolled.observe(t, br.Result())
			time.Sleep(700 * time.Millisecond)
		}
		heal()
		t.Logf("phase %s: %d segments rolled so far", name, len(rolled))
	}
	phase("latency", 6000, func() { tp.toxic(t, "lat", "latency", "downstream", map[string]any{"latency": 300, "jitter": 100}) },
		func() { tp.clear(t, "lat") })
	phase("resets", 6000, func() {
		// Reset the connection after a few KB of the request body: mid-upload.
		tp.toxic(t, "reset", "limit_data", "upstream", map[string]any{"bytes": 200000})
	}, func() { tp.clear(t, "reset") })
	phase("timeouts", 6000, func() { tp.toxic(t, "timeout", "timeout", "upstream", map[string]any{"timeout": 2000}) },
		func() { tp.clear(t, "timeout") })
	phase("bandwidth", 6000, func() { tp.toxic(t, "bw", "bandwidth", "upstream", map[string]any{"rate": 2000}) },
		func() { tp.clear(t, "bw") })
	phase("minio-restart", 6000, func() {
		go func() { time.Sleep(300 * time.Millisecond); srv.Stop(); time.Sleep(2 * time.Second); srv.Restart() }()
	}, func() {})
	// Everything rolled gets archived once the faults are gone.
	for _, tp := range br.Result().Topics {
		for _, p := range tp.Partitions {
			br.Roll(tp.Name, p.Partition)
		}
	}
	br.Append(ctx, "small", 10)
	br.Append(ctx, "big", 1)
	rolled.observe(t, br.Result())
	direct := s3Bucket2(t, srv, bucketName)
	waitFor(t, 3*time.Minute, func() bool {
		got := archivedVersions(t, direct)
		for k, vs := range rolled {
			for v := range vs {
				if !got[k][v] {
					return false
				}
			}
		}
		return true
	})
	got := archivedVersions(t, direct) // fails on any version committed twice
	for k, vs := range got {
		for v := range vs {
			if !rolled[k][v] {
				t.Errorf("%s: unexpected version %s", k, v)
			}
		}
	}
	scrubAll(t, direct) // no manifest points at a missing or partial object
	n := 0
	for _, vs := range rolled {
		n += len(vs)
	}
	t.Logf("%d segments archived exactly once through latency, resets, timeouts, a bandwidth limit and a MinIO restart (%v failed attempts retried)",
		n, readCounterVec(metrics))
}

func readCounterVec(m *agent.Metrics) float64 {
	return readCounter(m.Failures.WithLabelValues("upload"))
}
