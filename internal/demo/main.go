// Command demo shows segvault end to end on one machine with nothing but Go:
// it generates a realistic broker log dir with the simulated broker (records
// produced by a real Kafka client), archives it to the embedded local store
// with `segvault agent --once`, runs the agent again to show nothing is
// uploaded twice, restores into a fresh dir with `segvault restore`, and
// proves every archived file came back byte-identical. `make demo` runs it.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/internal/brokersim"
)

func main() {
	bin := flag.String("segvault", "bin/segvault", "the segvault binary")
	dir := flag.String("dir", "demo-out", "work dir (recreated)")
	flag.Parse()
	if err := run(*bin, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "DEMO FAILED:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }

func run(bin, dir string) error {
	ctx := context.Background()
	dir, _ = filepath.Abs(dir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	logs, archiveDir, state, restored := filepath.Join(dir, "kafka-logs"), filepath.Join(dir, "archive"), filepath.Join(dir, "state"), filepath.Join(dir, "restored")

	step("generating a broker log dir with a real Kafka client (franz-go against kfake) in %s", logs)
	t0 := time.Now()
	res, err := brokersim.Generate(ctx, brokersim.Config{
		Dir: logs, NodeID: 1, SegmentBytes: 256 << 10, Seed: 42,
		Topics: []brokersim.TopicSpec{
			{Name: "orders", Partitions: 3, Codec: "zstd", Idempotent: true, Records: 30000, ValueBytes: 200},
			{Name: "clicks", Partitions: 2, Codec: "none", Records: 20000, ValueBytes: 120},
			{Name: "payments", Partitions: 2, Codec: "lz4", Transactional: true, AbortEvery: 4, Records: 12000},
			{Name: "audit.gzip", Partitions: 1, Codec: "gzip", Idempotent: true, Records: 8000},
			{Name: "events.snappy", Partitions: 1, Codec: "snappy", Records: 8000, Headers: 2},
			{Name: "customers", Partitions: 1, Codec: "none", Compacted: true, Idempotent: true, Records: 6000, TombstoneEvery: 10},
		},
	})
	if err != nil {
		return err
	}
	nparts, nsegs := 0, 0
	for _, t := range res.Topics {
		for _, p := range t.Partitions {
			nparts++
			nsegs += len(p.Segments)
		}
	}
	fmt.Printf("    %d topics, %d partitions, %d segments (the last of each partition is active) in %s\n", len(res.Topics), nparts, nsegs, time.Since(t0).Round(time.Millisecond))

	common := []string{"--log-dirs", logs, "--bucket", "file://" + archiveDir, "--state-dir", state, "--settle-time", "0", "--listen", ""}
	step("segvault agent --once: validate and archive every rolled segment (never the active one)")
	if err := sh(bin, append([]string{"agent", "--once"}, common...)...); err != nil {
		return err
	}
	step("segvault agent --once again: nothing new is uploaded")
	before := countFiles(archiveDir)
	if err := sh(bin, append([]string{"agent", "--once"}, common...)...); err != nil {
		return err
	}
	if after := countFiles(archiveDir); after != before {
		return fmt.Errorf("second run created %d new objects", after-before)
	}
	fmt.Printf("    %d objects in the archiveDir before and after\n", before)

	step("segvault ls: what the archiveDir holds")
	if err := sh(bin, "ls", "--bucket", "file://"+archiveDir); err != nil {
		return err
	}
	step("segvault verify --scrub: re-read every object against its manifest")
	if err := shTail(bin, "verify", "--scrub", "--bucket", "file://"+archiveDir); err != nil {
		return err
	}

	step("segvault restore into an empty dir %s", restored)
	if err := sh(bin, "restore", "--bucket", "file://"+archiveDir, "--target", restored); err != nil {
		return err
	}

	step("proving byte identity of every archived file")
	same, total, err := compare(logs, archiveDir, restored)
	if err != nil {
		return err
	}
	step("segvault verify --deep on the restored dir")
	if err := shTail(bin, "verify", "--deep", restored); err != nil {
		return err
	}
	fmt.Printf("\nDEMO OK: %d of %d archived files restored byte-identical from %s (active segments stay with the broker)\n", same, total, archiveDir)
	return nil
}

// compare checks every file the archiveDir's manifests list: restored byte for
// byte identical to the original in the broker's log dir.
func compare(logs, archiveDir, restored string) (same, total int, err error) {
	err = filepath.Walk(archiveDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		if _, k, ok := archive.GuessKey(filepath.ToSlash(p)); !ok || !k.IsManifest() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m, err := archive.DecodeSegmentManifest(p, data)
		if err != nil {
			return err
		}
		part := fmt.Sprintf("%s-%d", m.Topic, m.Partition)
		for _, f := range m.Files {
			total++
			want, err := os.ReadFile(filepath.Join(logs, part, f.Name))
			if err != nil {
				return err
			}
			got, err := os.ReadFile(filepath.Join(restored, part, f.Name))
			if err != nil {
				return fmt.Errorf("archived file %s/%s was not restored: %w", part, f.Name, err)
			}
			if !bytes.Equal(want, got) {
				return fmt.Errorf("%s/%s differs: sha256 %x restored, %x original", part, f.Name, sha256.Sum256(got), sha256.Sum256(want))
			}
			same++
		}
		return nil
	})
	if err == nil && total == 0 {
		err = fmt.Errorf("nothing was archived")
	}
	fmt.Printf("    %d/%d archived files identical (.log, .index, .timeindex, .txnindex, producer snapshots)\n", same, total)
	return same, total, err
}

func countFiles(dir string) int {
	n := 0
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func sh(bin string, args ...string) error {
	fmt.Printf("    $ segvault %s\n", strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	var errb bytes.Buffer
	out := &indent{w: os.Stdout}
	cmd.Stdout = out
	cmd.Stderr = &errb
	err := cmd.Run()
	out.Flush()
	if err != nil {
		io.Copy(os.Stderr, &errb)
		return fmt.Errorf("segvault %s: %w", args[0], err)
	}
	return nil
}

// shTail runs segvault and shows only the last line of its output.
func shTail(bin string, args ...string) error {
	fmt.Printf("    $ segvault %s\n", strings.Join(args, " "))
	out, err := exec.Command(bin, args...).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		os.Stderr.Write(out)
		return fmt.Errorf("segvault %s: %w", args[0], err)
	}
	fmt.Printf("      %s\n", lines[len(lines)-1])
	return nil
}

// indent prints the child's output indented, whole lines only: the output
// arrives in pieces (a pipe read ends anywhere, tabwriter writes cell by
// cell), and a piece is not a line.
type indent struct {
	w       io.Writer
	partial []byte
}

func (i *indent) Write(p []byte) (int, error) {
	i.partial = append(i.partial, p...)
	for {
		n := bytes.IndexByte(i.partial, '\n')
		if n < 0 {
			return len(p), nil
		}
		fmt.Fprintf(i.w, "      %s\n", i.partial[:n])
		i.partial = i.partial[n+1:]
	}
}

// Flush prints a last line without its newline.
func (i *indent) Flush() {
	if len(i.partial) > 0 {
		fmt.Fprintf(i.w, "      %s\n", i.partial)
		i.partial = nil
	}
}
