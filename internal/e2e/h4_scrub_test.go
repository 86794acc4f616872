package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
)

// h4Run runs the segvault binary with the MinIO credentials in the
// environment and returns its combined output and exit status.
func h4Run(t *testing.T, srv *miniotest.Server, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(segvaultBin(t), args...)
	cmd.Env = os.Environ()
	if srv != nil {
		cmd.Env = append(cmd.Env, "SEGVAULT_S3_ACCESS_KEY="+srv.AccessKey(), "SEGVAULT_S3_SECRET_KEY="+srv.SecretKey())
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// h4S3Flags are the store flags for srv.
func h4S3Flags(srv *miniotest.Server, bucket string) []string {
	return []string{"--bucket", bucket, "--s3-endpoint", srv.Endpoint(), "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1"}
}

// h4Keys lists every object key of a MinIO bucket with minio-go.
func h4Keys(t *testing.T, srv *miniotest.Server, bucket string) []string {
	t.Helper()
	var keys []string
	for oi := range srv.Client().ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	return keys
}

// TestH4BucketURLPrefixOneLayout: with --bucket s3://BUCKET/PREFIX the agent
// writes under PREFIX (checked by listing MinIO directly) and ls, restore and
// verify --scrub given the same flags find the data; --prefix joins after
// the URL's prefix.
func TestH4BucketURLPrefixOneLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	for _, tc := range []struct {
		name, url, flagPrefix, want string
	}{
		{"url", "some/prefix", "", "some/prefix/"},
		{"url+flag", "some", "more/p", "some/more/p/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := srv.NewBucket(t)
			dir := filepath.Join(t.TempDir(), "kafka-logs")
			if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 32 << 10,
				Topics: []brokersim.TopicSpec{{Name: "orders", Partitions: 1, Records: 1500}}}); err != nil {
				t.Fatal(err)
			}
			store := h4S3Flags(srv, "s3://"+name+"/"+tc.url)
			if tc.flagPrefix != "" {
				store = append(store, "--prefix", tc.flagPrefix)
			}
			out, code := h4Run(t, srv, append([]string{"agent", "--once", "--log-dirs", dir, "--state-dir", t.TempDir(), "--settle-time", "0", "--listen", ""}, store...)...)
			if code != 0 {
				t.Fatalf("agent: exit %d\n%s", code, out)
			}
			keys := h4Keys(t, srv, name)
			if len(keys) == 0 {
				t.Fatal("agent wrote nothing")
			}
			for _, k := range keys {
				if !strings.HasPrefix(k, tc.want) {
					t.Errorf("object %s is not under the prefix %s", k, tc.want)
				}
			}
			out, code = h4Run(t, srv, append([]string{"ls"}, store...)...)
			if code != 0 || !strings.Contains(out, "orders") {
				t.Fatalf("ls: exit %d, no topic orders:\n%s", code, out)
			}
			out, code = h4Run(t, srv, append([]string{"verify", "--scrub"}, store...)...)
			if code != 0 || strings.Contains(out, " 0 files checked") {
				t.Fatalf("verify --scrub: exit %d\n%s", code, out)
			}
			target := t.TempDir()
			out, code = h4Run(t, srv, append([]string{"restore", "--target", target}, store...)...)
			if code != 0 {
				t.Fatalf("restore: exit %d\n%s", code, out)
			}
			logs, _ := filepath.Glob(filepath.Join(target, "orders-0", "*.log"))
			if len(logs) == 0 {
				t.Fatalf("restore wrote no segment of orders-0:\n%s", out)
			}
		})
	}
}
