package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
)

// TestScrubFindsCorruptObject: an object corrupted directly in the bucket is
// reported by `segvault verify --scrub` with its key, exit status 1; the
// intact archive scrubs clean with exit status 0.
func TestScrubFindsCorruptObject(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	bin := segvaultBin(t)
	srv := miniotest.Start(t)
	name := srv.NewBucket(t)
	b := s3Bucket2(t, srv, name)
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 32 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 2000}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := newAgent(t, b, agent.Config{LogDirs: []string{dir}}, nil).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	scrub := func() (string, int) {
		cmd := exec.Command(bin, "verify", "--scrub", "--bucket", "s3://"+name, "--s3-endpoint", srv.Endpoint(), "--s3-insecure",
			"--s3-path-style", "--s3-region", "us-east-1")
		cmd.Env = append(os.Environ(), "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := scrub(); code != 0 {
		t.Fatalf("clean archive: exit %d\n%s", code, out)
	}
	f := manifests(t, b)[0].Files[0]
	victim := f.Object.Key
	if f.IsV2() {
		victim = f.DataKey
	}
	srv.CorruptObject(t, name, victim, func(d []byte) []byte { d[len(d)/2] ^= 0x10; return d })
	out, code := scrub()
	if code != 1 || !strings.Contains(out, victim) {
		t.Fatalf("corrupt object %s: exit %d\n%s", victim, code, out)
	}
}
