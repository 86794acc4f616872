package main

// Go benchmarks for the hot paths the package benchmarks do not cover
// (segment/bench_test.go: Scan and its CRC floor; archive/bench_test.go:
// PutFile/OpenVerified against a null store and MinIO; index/bench_test.go:
// index rebuild and verification). Each one runs segvault's code and, as
// sub-benchmarks beside it, the least work that does the same job, so
// `go test -bench . ./internal/benchrun` prints comparable pairs:
//
//	BenchmarkAgentRunOnce  the agent's whole pipeline (discover, stage,
//	                       validate + hash, encode, manifests, state) over
//	                       1 MiB brokersim segments into a null store, beside
//	                       Encoder.PutFile alone and read + SHA-256 alone;
//	BenchmarkAgentRescan   a steady-state rescan (Agent.Pass) of 1,000
//	                       partitions × 5 segments, beside readdir + stat;
//	BenchmarkRestoreRun    restore.MakePlan + restore.Run from a local
//	                       store, beside copying the same stored objects.
//
// No server is needed: the stores are a null bucket and uploader.Local.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

var (
	genOnce sync.Once
	genDir  string
	genErr  error
	genMeta []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if genDir != "" {
		os.RemoveAll(genDir)
	}
	os.Exit(code)
}

// generated returns a brokersim log dir holding small-0 (17 segments of
// 1 MiB, the last active) and tiny-0 (6 one-batch segments).
func generated(tb testing.TB) string {
	tb.Helper()
	genOnce.Do(func() {
		if genDir, genErr = os.MkdirTemp("", "benchrun-test-"); genErr != nil {
			return
		}
		ctx := context.Background()
		if _, genErr = brokersim.Generate(ctx, brokersim.Config{Dir: filepath.Join(genDir, "small"), NodeID: 1, SegmentBytes: 1 << 20,
			Seed: 12, ForgetRecords: true, Topics: []brokersim.TopicSpec{{Name: "small", Codec: "none", Idempotent: true,
				Records: 76000, ValueBytes: 200}}}); genErr != nil {
			return
		}
		if _, genErr = brokersim.Generate(ctx, brokersim.Config{Dir: filepath.Join(genDir, "tiny"), NodeID: 1, SegmentBytes: 4096,
			Seed: 13, ForgetRecords: true, Topics: []brokersim.TopicSpec{{Name: "tiny", Codec: "none", Idempotent: true,
				Records: 60, BatchRecords: 10, ValueBytes: 200}}}); genErr != nil {
			return
		}
		genMeta, genErr = os.ReadFile(filepath.Join(genDir, "small", index.MetaPropertiesFile))
	})
	if genErr != nil {
		tb.Fatal(genErr)
	}
	return genDir
}

// nullBucket accepts every Create and discards the body; nothing exists.
type nullBucket struct{}

func (nullBucket) Get(context.Context, string) (io.ReadCloser, uploader.ObjectInfo, error) {
	return nil, uploader.ObjectInfo{}, uploader.ErrNotFound
}
func (nullBucket) Stat(context.Context, string) (uploader.ObjectInfo, error) {
	return uploader.ObjectInfo{}, uploader.ErrNotFound
}
func (nullBucket) List(context.Context, string, func(uploader.ObjectInfo) error) error { return nil }
func (nullBucket) Create(_ context.Context, _ string, r io.Reader, _ int64, _ uploader.PutOptions) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (nullBucket) Delete(context.Context, string) error { return nil }
func (nullBucket) String() string                       { return "null" }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// agentEncode is what `segvault agent` passes by default (auto, level 1).
var agentEncode = archive.EncodeOptions{Compression: archive.CompressionAuto, Level: 1}

func benchAgent(b *testing.B, logDir, state string, store uploader.Bucket, mod func(*agent.Config)) *agent.Agent {
	b.Helper()
	cfg := agent.Defaults()
	cfg.LogDirs = []string{logDir}
	cfg.Bucket = "file:///unused"
	cfg.StateDir = state
	cfg.SettleTime = 0
	cfg.LowPriority = false
	if mod != nil {
		mod(&cfg)
	}
	enc := archive.NewEncoder(archive.EncoderOptions{TempDir: state})
	a, err := agent.New(context.Background(), cfg, agent.NewArchive(store, enc, agentEncode), quiet, nil, "bench")
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func smallLogDir(b *testing.B, parts int) (string, []fileEntry, int) {
	b.Helper()
	gen := generated(b)
	h := &harness{metaProps: genMeta}
	dir := filepath.Join(b.TempDir(), "logs")
	if err := h.copyPartitions(dir, "small", filepath.Join(gen, "small", "small-0"), parts); err != nil {
		b.Fatal(err)
	}
	files, segs, err := rolledFiles(dir)
	if err != nil {
		b.Fatal(err)
	}
	if err := warm(files); err != nil {
		b.Fatal(err)
	}
	return dir, files, segs
}

func BenchmarkAgentRunOnce(b *testing.B) {
	logDir, files, segs := smallLogDir(b, 2)
	raw := totalSize(files)
	ctx := context.Background()
	b.Run("agent-runonce-nullstore", func(b *testing.B) {
		b.SetBytes(raw)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			state, err := os.MkdirTemp(b.TempDir(), "state")
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			a := benchAgent(b, logDir, state, nullBucket{}, nil)
			rep, err := a.RunOnce(ctx)
			if err != nil || rep.Archived != segs {
				b.Fatalf("archived %d of %d: %v %v", rep.Archived, segs, err, rep.Errors)
			}
			a.Close()
		}
		b.ReportMetric(float64(segs), "segments/op")
	})
	// The baselines use the agent's default concurrency (2) too.
	b.Run("baseline-putfile-nullstore", func(b *testing.B) {
		enc := archive.NewEncoder(archive.EncoderOptions{TempDir: b.TempDir()})
		b.SetBytes(raw)
		b.ReportAllocs()
		for b.Loop() {
			if err := eachFile(files, 2, func(f fileEntry, fh *os.File) error {
				_, err := enc.PutFile(ctx, nullBucket{}, f.key, fh, f.size, agentEncode)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-read-sha256", func(b *testing.B) {
		b.SetBytes(raw)
		b.ReportAllocs()
		for b.Loop() {
			if err := eachFile(files, 2, func(_ fileEntry, fh *os.File) error {
				_, err := io.Copy(sha256.New(), fh)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// eachFile opens every file and calls fn on it, conc at a time.
func eachFile(files []fileEntry, conc int, fn func(fileEntry, *os.File) error) error {
	work := make(chan fileEntry)
	errs := make(chan error, conc)
	for i := 0; i < conc; i++ {
		go func() {
			var first error
			for f := range work {
				if first != nil {
					continue
				}
				fh, err := os.Open(f.path)
				if err == nil {
					err = fn(f, fh)
					fh.Close()
				}
				first = err
			}
			errs <- first
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	var all []error
	for i := 0; i < conc; i++ {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

func BenchmarkAgentRescan(b *testing.B) {
	gen := generated(b)
	const parts = 1000
	logDir := filepath.Join(b.TempDir(), "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logDir, index.MetaPropertiesFile), genMeta, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := linkPartitions(logDir, filepath.Join(gen, "tiny", "tiny-0"), parts, 20); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("agent-pass", func(b *testing.B) {
		a := benchAgent(b, logDir, b.TempDir(), nullBucket{}, func(c *agent.Config) { c.SettleTime = 1 << 62; c.StagingBudget = 0 })
		defer a.Close()
		if _, err := a.Pass(ctx); err != nil { // the first pass; later ones are the periodic rescan
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			rep, err := a.Pass(ctx)
			if err != nil || rep.Partitions != parts {
				b.Fatalf("%v partitions %d", err, rep.Partitions)
			}
		}
		b.ReportMetric(parts, "partitions/op")
	})
	b.Run("baseline-readdir-stat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := plainWalk(logDir); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(parts, "partitions/op")
	})
}

func BenchmarkRestoreRun(b *testing.B) {
	logDir, files, segs := smallLogDir(b, 2)
	raw := totalSize(files) // what restore writes
	ctx := context.Background()
	storeDir := filepath.Join(b.TempDir(), "archive")
	local, err := uploader.NewLocal(storeDir)
	if err != nil {
		b.Fatal(err)
	}
	a := benchAgent(b, logDir, b.TempDir(), local, nil)
	if rep, err := a.RunOnce(ctx); err != nil || rep.Archived != segs {
		b.Fatalf("archive: %v %d of %d", err, rep.Archived, segs)
	}
	a.Close()
	src := restore.NewSource(local, archive.DecodeOptions{})
	b.Run("restore-run", func(b *testing.B) {
		b.SetBytes(raw)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			target := filepath.Join(b.TempDir(), "target")
			b.StartTimer()
			plan, err := restore.MakePlan(ctx, src, archive.NewLayout(""), restore.Selection{Broker: -1}, 4)
			if err != nil {
				b.Fatal(err)
			}
			rep, err := restore.Run(ctx, src, plan, restore.Options{Targets: []string{target}, Concurrency: 4, Log: quiet})
			if err != nil || rep.Bytes != raw {
				b.Fatalf("restored %d bytes, want %d: %v", rep.Bytes, raw, err)
			}
		}
	})
	b.Run("baseline-copy-objects", func(b *testing.B) {
		b.SetBytes(raw) // the same raw bytes, for a comparable MB/s
		b.ReportAllocs()
		buf := make([]byte, 1<<20)
		for b.Loop() {
			b.StopTimer()
			target := filepath.Join(b.TempDir(), "target")
			b.StartTimer()
			err := filepath.WalkDir(storeDir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(storeDir, p)
				dst := filepath.Join(target, rel)
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				in, err := os.Open(p)
				if err != nil {
					return err
				}
				defer in.Close()
				out, err := os.Create(dst)
				if err != nil {
					return err
				}
				_, err = io.CopyBuffer(out, in, buf)
				return errors.Join(err, out.Close())
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Tests of the harness's own helpers (fast; no servers).

func TestTileKeepsSegmentValid(t *testing.T) {
	gen := generated(t)
	tpl, err := concatSegments(filepath.Join(gen, "small", "small-0"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tiled.log")
	n, next, err := tile(tpl, int64(len(tpl))*2+100_000, p)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := scanFile(p, true)
	if err != nil {
		t.Fatalf("tiled segment does not deep-verify: %v", err)
	}
	if sum.Size != n || sum.LastOffset+1 != next || n <= int64(len(tpl))*2 {
		t.Fatalf("size %d (summary %d), next %d (summary last %d)", n, sum.Size, next, sum.LastOffset)
	}
}

func TestRolledFilesMatchesAgent(t *testing.T) {
	gen := generated(t)
	files, segs, err := rolledFiles(filepath.Join(gen, "small"))
	if err != nil {
		t.Fatal(err)
	}
	bases, _ := logBases(filepath.Join(gen, "small", "small-0"))
	if segs != len(bases)-1 || segs < 10 {
		t.Fatalf("%d rolled segments, %d .log files", segs, len(bases))
	}
	for _, f := range files {
		if n, ok := segment.ParseFileName(filepath.Base(f.path)); !ok || n.BaseOffset == bases[len(bases)-1] && n.Kind != segment.KindSnapshot {
			t.Fatalf("%s is not a rolled segment's file", f.path)
		}
	}
}

func TestParsers(t *testing.T) {
	s, err := parseOnce("segvault agent --once: 3 partitions, 7 segments archived (1000 bytes, 200 stored), 1 already archived, 0 corrupt, 0 lost, 2 failed\n")
	if err != nil || s.partitions != 3 || s.archived != 7 || s.raw != 1000 || s.stored != 200 || s.already != 1 || s.failed != 2 {
		t.Fatalf("%+v %v", s, err)
	}
	if b, ok := manifestBase("v1/c/topics/t/0/id/segments/00000000000000004242/1-abcdef012345/manifest.json"); !ok || b != 4242 {
		t.Fatal(b, ok)
	}
	if _, ok := manifestBase("v1/c/topics/t/0/id/segments/00000000000000004242/1-abcdef012345/x.log.zst"); ok {
		t.Fatal("data object taken for a manifest")
	}
	total, before, evicted, left := compareResidency(map[string][]bool{"a": {true, true, false, false}}, map[string][]bool{"a": {true, false, true, false}})
	if total != 4 || before != 2 || evicted != 1 || left != 1 {
		t.Fatal(total, before, evicted, left)
	}
	if got := thousands("1234567"); got != "1,234,567" {
		t.Fatal(got)
	}
	if !strings.Contains(fmtVal(1536, "MiB/s"), "1,536") || !bytes.Equal([]byte(fmtRatio(0.5)), []byte("0.50×")) {
		t.Fatal(fmtVal(1536, "MiB/s"), fmtRatio(0.5))
	}
}
