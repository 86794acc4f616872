// Package e2e holds segvault's integration and end-to-end tests: the agent,
// restore and CLI against a real MinIO (internal/miniotest), the simulated
// broker (internal/brokersim), the real broker-written fixtures and real
// Kafka brokers (internal/kafkatest).
package e2e

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// s3Bucket returns a fresh bucket on srv, with retries.
func s3Bucket(t *testing.T, srv *miniotest.Server) uploader.Bucket {
	t.Helper()
	return s3Bucket2(t, srv, srv.NewBucket(t))
}

// s3Bucket2 opens an existing bucket on srv, with (short) retries.
func s3Bucket2(t *testing.T, srv *miniotest.Server, name string) uploader.Bucket {
	t.Helper()
	b, err := uploader.NewS3(uploader.S3Options{Endpoint: srv.Endpoint(), Bucket: name, DisableTLS: true, PathStyle: true,
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey(), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return uploader.WithRetry(b, uploader.RetryPolicy{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newAgent builds an agent over b for logDir.
func newAgent(t *testing.T, b uploader.Bucket, cfg agent.Config, metrics *agent.Metrics) *agent.Agent {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.Bucket = "test://"
	if cfg.ScanInterval == 0 {
		cfg.ScanInterval = agent.Defaults().ScanInterval
	}
	d := agent.Defaults()
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.Compression == "" {
		cfg.Compression = d.Compression
	}
	if cfg.ZstdLevel == 0 {
		cfg.ZstdLevel = 1
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = d.DrainTimeout
	}
	if cfg.BrokerID == 0 {
		cfg.BrokerID = -1
	}
	enc := archive.NewEncoder(archive.EncoderOptions{TempDir: t.TempDir()})
	a, err := agent.New(context.Background(), cfg, agent.NewArchive(b, enc, archive.EncodeOptions{Compression: archive.CompressionAuto, Level: 1}), testLogger(t), metrics, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// countObjects counts every object in b.
func countObjects(t *testing.T, b uploader.Bucket) int {
	t.Helper()
	n := 0
	if err := b.List(context.Background(), "", func(uploader.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// manifests returns every committed segment manifest in b.
func manifests(t *testing.T, b uploader.Bucket) []*archive.SegmentManifest {
	t.Helper()
	ctx := context.Background()
	var out []*archive.SegmentManifest
	err := b.List(ctx, "", func(oi uploader.ObjectInfo) error {
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
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// restoreAll restores sel into targets.
func restoreAll(t *testing.T, b uploader.Bucket, sel restore.Selection, opts restore.Options) *restore.Report {
	t.Helper()
	ctx := context.Background()
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), sel, 4)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 4
	}
	if opts.ToOffset == 0 {
		opts.ToOffset = -1
	}
	if opts.ToTime == 0 {
		opts.ToTime = -1
	}
	if opts.NodeID == 0 {
		opts.NodeID = -1
	}
	rep, err := restore.Run(ctx, src, plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// compareArchived checks that every file named by a manifest in b came back
// into one of the restored dirs byte for byte identical to the source. It
// returns how many files it compared.
func compareArchived(t *testing.T, b uploader.Bucket, src string, restored ...string) int {
	t.Helper()
	n := 0
	for _, m := range manifests(t, b) {
		part := m.Topic + "-" + itoa(m.Partition)
		for _, f := range m.Files {
			want, err := os.ReadFile(filepath.Join(src, part, f.Name))
			if err != nil {
				t.Fatalf("source of archived %s/%s: %v", part, f.Name, err)
			}
			var got []byte
			for _, r := range restored {
				if got, err = os.ReadFile(filepath.Join(r, part, f.Name)); err == nil {
					break
				}
			}
			if err != nil {
				t.Errorf("archived %s/%s not restored: %v", part, f.Name, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s: restored %d bytes differ from the original %d bytes", part, f.Name, len(got), len(want))
			}
			n++
		}
	}
	return n
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }

// copyTree copies a read-only fixture tree into a writable temp dir.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		fi, err := in.Stat()
		if err != nil {
			return err
		}
		w, err := os.Create(out)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, in); err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return os.Chtimes(out, fi.ModTime(), fi.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func mustRe(s string) *regexp.Regexp { return regexp.MustCompile(s) }
