package restore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/restore"
	"github.com/segvault/segvault/uploader"
)

// buildArchive builds a small archive in a local store with the real agent and
// returns the store's root dir.
func buildArchive(t *testing.T) (root string) {
	t.Helper()
	root, _, _ = archiveWith(t, brokersim.Config{NodeID: 1, SegmentBytes: 32 << 10, Seed: 1,
		Topics: []brokersim.TopicSpec{{Name: "orders", Partitions: 2, Codec: "none", Records: 1500}}})
	return root
}

// archiveWith generates a log dir with brokersim (cfg.Dir is set here),
// archives its rolled segments into a local store with the real agent, and
// returns the store's root, the store and what brokersim produced.
func archiveWith(t *testing.T, cfg brokersim.Config) (string, *uploader.Local, *brokersim.Result) {
	t.Helper()
	ctx := context.Background()
	cfg.Dir = filepath.Join(t.TempDir(), "kafka-logs")
	res, err := brokersim.Generate(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "archive")
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	ac := agent.Defaults()
	ac.LogDirs, ac.Bucket, ac.StateDir, ac.SettleTime, ac.LowPriority = []string{cfg.Dir}, "file://"+root, t.TempDir(), 0, false
	enc := archive.NewEncoder(archive.EncoderOptions{TempDir: t.TempDir()})
	a, err := agent.New(ctx, ac, agent.NewArchive(b, enc, archive.EncodeOptions{Compression: archive.CompressionZstd, Level: 1}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.RunOnce(ctx)
	if err != nil || rep.Archived == 0 || rep.Failed+rep.Corrupt > 0 {
		t.Fatalf("archive: %+v %v", rep, err)
	}
	return root, b, res
}

func run(t *testing.T, root, target string, opts restore.Options) (*restore.Report, error) {
	t.Helper()
	b, err := uploader.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	src := restore.NewSource(b, archive.DecodeOptions{})
	plan, err := restore.MakePlan(context.Background(), src, archive.NewLayout(""), restore.Selection{Broker: -1}, 2)
	if err != nil {
		return nil, err
	}
	opts.Targets = []string{target}
	opts.ToOffset, opts.ToTime, opts.NodeID = -1, -1, -1
	return restore.Run(context.Background(), src, plan, opts)
}

// firstManifest returns the path of a manifest for orders-0 and its content.
func firstManifest(t *testing.T, root string) (string, *archive.SegmentManifest) {
	t.Helper()
	var path string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && path == "" && strings.Contains(p, "/orders/0/") && filepath.Base(p) == archive.ManifestName {
			path = p
		}
		return nil
	})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := archive.DecodeSegmentManifest(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return path, m
}

func writeManifest(t *testing.T, path string, m *archive.SegmentManifest) {
	t.Helper()
	data, _ := json.Marshal(m)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// noPartialPartition checks the target holds no partition dir and no temp
// partition for orders-0.
func noPartialPartition(t *testing.T, target string) {
	t.Helper()
	for _, p := range []string{filepath.Join(target, "orders-0"), filepath.Join(target, restore.TempDirName, "orders-0")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists after a failed restore", p)
		}
	}
}

func TestHostileBucket(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, root string) string // returns the key the error must name
		want   string
	}{
		{"dotdot-file-name", func(t *testing.T, root string) string {
			p, m := firstManifest(t, root)
			m.Files[1].Name = "../../../../etc/passwd"
			writeManifest(t, p, m)
			return strings.TrimPrefix(p, root+"/")
		}, "illegal or repeated file name"},
		{"dotdot-topic", func(t *testing.T, root string) string {
			p, m := firstManifest(t, root)
			m.Topic = ".."
			writeManifest(t, p, m)
			return strings.TrimPrefix(p, root+"/")
		}, "illegal topic name"},
		{"object-outside-segment", func(t *testing.T, root string) string {
			p, m := firstManifest(t, root)
			m.Files[0].DataKey = "v2/elsewhere/object.sv2"
			writeManifest(t, p, m)
			return strings.TrimPrefix(p, root+"/")
		}, "outside the segment's prefix"},
		{"truncated-object", func(t *testing.T, root string) string {
			_, m := firstManifest(t, root)
			obj := filepath.Join(root, m.Files[0].DataKey)
			data, _ := os.ReadFile(obj)
			os.Chmod(obj, 0o644)
			if err := os.WriteFile(obj, data[:len(data)/2], 0o644); err != nil {
				t.Fatal(err)
			}
			return m.Files[0].DataKey
		}, "object"},
		{"flipped-byte", func(t *testing.T, root string) string {
			_, m := firstManifest(t, root)
			obj := filepath.Join(root, m.Files[0].DataKey)
			data, _ := os.ReadFile(obj)
			data[len(data)/2] ^= 0x01
			os.Chmod(obj, 0o644)
			if err := os.WriteFile(obj, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return m.Files[0].DataKey
		}, "object"},
		{"decompression-bomb", func(t *testing.T, root string) string {
			// A valid zstd frame of 512 MiB of zeros, recorded as the small
			// .log it replaces: stored digests match, so only the cap stops it.
			p, m := firstManifest(t, root)
			var buf bytes.Buffer
			enc, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
			zero := make([]byte, 1<<20)
			for i := 0; i < 512; i++ {
				enc.Write(zero)
			}
			enc.Close()
			// One chunk (v2): the frame stands for the whole .log, whose
			// raw size the manifest still records.
			obj := filepath.Join(root, m.Files[0].DataKey)
			os.Remove(obj)
			if err := os.WriteFile(obj, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			crc := fmt.Sprintf("%08x", crc32.Checksum(buf.Bytes(), crc32.MakeTable(crc32.Castagnoli)))
			m.Files[0].Chunks = []archive.Chunk{{Offset: 0, StoredSize: int64(buf.Len()), RawSize: m.Files[0].Size, CRC32C: crc,
				RawCRC32C: "00000000", Compression: archive.CompressionZstd}}
			writeManifest(t, p, m)
			return m.Files[0].DataKey
		}, "object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := buildArchive(t)
			key := tc.tamper(t, root)
			target := filepath.Join(t.TempDir(), "target")
			_, err := run(t, root, target, restore.Options{})
			if err == nil {
				t.Fatal("restore succeeded on a hostile bucket")
			}
			if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not name %q and %q: %v", key, tc.want, err)
			}
			noPartialPartition(t, target)
			// Nothing was written outside the target.
			if _, err := os.Stat(filepath.Join(filepath.Dir(target), "etc")); err == nil {
				t.Fatal("wrote outside the target")
			}
			t.Logf("%v", err)
		})
	}
}

// TestForceAndResume: an existing non-empty partition dir is never touched
// without Force; an interrupted restore resumes with its verified files.
func TestForceAndResume(t *testing.T) {
	root := buildArchive(t)
	target := filepath.Join(t.TempDir(), "target")
	os.MkdirAll(filepath.Join(target, "orders-0"), 0o755)
	sentinel := filepath.Join(target, "orders-0", "00000000000000000000.log")
	os.WriteFile(sentinel, []byte("precious"), 0o644)
	if _, err := run(t, root, target, restore.Options{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("want a refusal naming --force, got %v", err)
	}
	if data, _ := os.ReadFile(sentinel); string(data) != "precious" {
		t.Fatal("existing partition dir was modified without --force")
	}
	rep, err := run(t, root, target, restore.Options{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partitions != 2 {
		t.Fatalf("%+v", rep)
	}
	// Interrupted: the temp dir holds verified files of a partition; a
	// rerun skips them (resume) and produces the same result.
	target2 := filepath.Join(t.TempDir(), "target2")
	if _, err := run(t, root, target2, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(target2, restore.TempDirName, "orders-1")
	if err := os.Rename(filepath.Join(target2, "orders-1"), tmp); err != nil {
		os.MkdirAll(filepath.Dir(tmp), 0o755)
		if err := os.Rename(filepath.Join(target2, "orders-1"), tmp); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = run(t, root, target2, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resumed == 0 {
		t.Fatalf("nothing resumed: %+v", rep)
	}
	if rep.Skipped != 1 {
		t.Fatalf("the intact orders-0 should be left alone: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(target2, restore.TempDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir left behind: %v", err)
	}
}
