package e2e

import (
	"context"
	"encoding/json"
	"fmt"
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

// h4Archive archives a copy of a log dir with the binary (agent --once) to
// a new MinIO bucket and returns the bucket's name.
func h4Archive(t *testing.T, srv *miniotest.Server, dir string) string {
	t.Helper()
	name := srv.NewBucket(t)
	out, code := h4Run(t, srv, append([]string{"agent", "--once", "--log-dirs", dir, "--state-dir", t.TempDir(), "--settle-time", "0", "--listen", ""},
		h4S3Flags(srv, "s3://"+name)...)...)
	if code != 0 {
		t.Fatalf("agent: exit %d\n%s", code, out)
	}
	return name
}

// h4FixtureKRaft is a real KRaft log dir with three archived
// __cluster_metadata snapshots.
const h4FixtureKRaft = fixturesRoot + "/ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data"

// TestH4ScrubKRaftSnapshot: a flipped byte in an archived __cluster_metadata
// snapshot (real fixture) is found by verify --scrub (exit 1, key named);
// the intact archive scrubs every snapshot.
func TestH4ScrubKRaftSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	name := h4Archive(t, srv, copyTree(t, h4FixtureKRaft))
	var snaps []string
	for _, k := range h4Keys(t, srv, name) {
		if strings.Contains(k, "/__cluster_metadata/") && strings.HasSuffix(strings.TrimSuffix(strings.TrimSuffix(k, ".sv2"), ".zst"), ".checkpoint") {
			snaps = append(snaps, k)
		}
	}
	if len(snaps) != 3 {
		t.Fatalf("want 3 archived snapshots, got %v", snaps)
	}
	store := h4S3Flags(srv, "s3://"+name)
	out, code := h4Run(t, srv, append([]string{"verify", "--scrub"}, store...)...)
	if code != 0 {
		t.Fatalf("clean archive: exit %d\n%s", code, out)
	}
	for _, s := range snaps {
		if !strings.Contains(out, s) {
			t.Errorf("clean scrub did not check snapshot %s", s)
		}
	}
	srv.CorruptObject(t, name, snaps[1], func(d []byte) []byte { d[len(d)/2] ^= 0x01; return d })
	out, code = h4Run(t, srv, append([]string{"verify", "--scrub"}, store...)...)
	if code != 1 || !strings.Contains(out, "CORRUPT") || !strings.Contains(out, snaps[1]) {
		t.Fatalf("flipped byte in %s: exit %d\n%s", snaps[1], code, out)
	}
}

// TestH4RebuildStateKRaftSnapshot: an agent with empty local state rebuilds
// it from the bucket for every manifest, the KRaft snapshots' too.
func TestH4RebuildStateKRaftSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	dir := copyTree(t, h4FixtureKRaft)
	name := h4Archive(t, srv, dir)
	n := 0
	for _, k := range h4Keys(t, srv, name) {
		if strings.HasSuffix(k, "/manifest.json") {
			n++
		}
	}
	out, code := h4Run(t, srv, append([]string{"--log-format", "json", "agent", "--once", "--log-dirs", dir, "--state-dir", t.TempDir(), "--settle-time", "0", "--listen", ""},
		h4S3Flags(srv, "s3://"+name)...)...)
	if code != 0 {
		t.Fatalf("agent: exit %d\n%s", code, out)
	}
	want := fmt.Sprintf(`"msg":"state rebuilt from the bucket","segments":%d`, n)
	if !strings.Contains(out, want) {
		t.Fatalf("want %s (%d manifests in the bucket):\n%s", want, n, out)
	}
}

// h4ScrubJSON runs verify --scrub --json and returns its rows and status.
func h4ScrubJSON(t *testing.T, srv *miniotest.Server, args ...string) ([]map[string]any, int) {
	t.Helper()
	out, code := h4Run(t, srv, append([]string{"verify", "--scrub", "--json"}, args...)...)
	var rows []map[string]any
	if i := strings.Index(out, "["); i < 0 || json.Unmarshal([]byte(out[i:strings.LastIndex(out, "]")+1]), &rows) != nil {
		t.Fatalf("verify --scrub --json: exit %d, no JSON:\n%s", code, out)
	}
	return rows, code
}

// TestH4ScrubMissingOrphanSample: a manifest whose object is gone is
// reported (exit 1); an object no manifest references is reported as an
// orphan; --sample with --scrub-state rotates through the archive so two
// runs read different objects and enough runs read every one.
func TestH4ScrubMissingOrphanSample(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	dir := filepath.Join(t.TempDir(), "kafka-logs")
	if _, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: 1, SegmentBytes: 16 << 10,
		Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 2000}}}); err != nil {
		t.Fatal(err)
	}
	name := h4Archive(t, srv, dir)
	store := h4S3Flags(srv, "s3://"+name)
	checked := func(rows []map[string]any) map[string]bool {
		m := map[string]bool{}
		for _, r := range rows {
			if r["status"] == "ok" && r["kind"] != "manifest" {
				m[r["path"].(string)] = true
			}
		}
		return m
	}
	all, code := h4ScrubJSON(t, srv, store...)
	if code != 0 {
		t.Fatalf("full scrub: exit %d: %v", code, all)
	}
	everything := checked(all)
	if len(everything) < 10 {
		t.Fatalf("only %d objects checked", len(everything))
	}
	state := filepath.Join(t.TempDir(), "scrub.state")
	union := map[string]bool{}
	var first map[string]bool
	for i := 0; i < 4; i++ {
		rows, code := h4ScrubJSON(t, srv, append([]string{"--sample", "0.3", "--scrub-state", state}, store...)...)
		if code != 0 {
			t.Fatalf("sampled scrub %d: exit %d", i, code)
		}
		got := checked(rows)
		if len(got) == 0 || len(got) >= len(everything) {
			t.Fatalf("sampled run %d read %d of %d objects", i, len(got), len(everything))
		}
		if i == 0 {
			first = got
		}
		if i == 1 {
			same := true
			for k := range got {
				same = same && first[k]
			}
			if same {
				t.Fatalf("two sampled runs read the same objects: %v", got)
			}
		}
		for k := range got {
			union[k] = true
		}
	}
	for k := range everything {
		if !union[k] {
			t.Errorf("4 runs of --sample 0.3 never read %s", k)
		}
	}

	var victim string
	for k := range everything {
		if strings.HasSuffix(strings.TrimSuffix(k, ".sv2"), ".timeindex") {
			victim = k
			break
		}
	}
	ctx := context.Background()
	if err := srv.Client().RemoveObject(ctx, name, victim, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Dir(victim) + "/stray-object"
	if _, err := srv.Client().PutObject(ctx, name, orphan, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, code := h4ScrubJSON(t, srv, store...)
	status := map[string]string{}
	for _, r := range rows {
		status[r["path"].(string)] = r["status"].(string)
	}
	if code != 1 || status[victim] != "missing" || status[orphan] != "orphan" {
		t.Fatalf("missing %s / orphan %s: exit %d, statuses %q / %q", victim, orphan, code, status[victim], status[orphan])
	}
}

// TestH4NothingCheckedIsNotSuccess: a mistyped archive path, an empty
// archive, a directory without Kafka files and bad --sample values are not
// a green run.
func TestH4NothingCheckedIsNotSuccess(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	srv := miniotest.Start(t)
	tmp := t.TempDir()
	mistyped := filepath.Join(tmp, "mistyped", "path")
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	notKafka := filepath.Join(tmp, "etc")
	os.Mkdir(notKafka, 0o755)
	os.WriteFile(filepath.Join(notKafka, "hosts"), []byte("127.0.0.1 localhost\n"), 0o644)
	emptyBucket := srv.NewBucket(t)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"verify", "--scrub", "--bucket", "file://" + mistyped}, 2},
		{[]string{"verify", "--scrub", "--bucket", "file://" + empty}, 1},
		{[]string{"verify", "--scrub", "--allow-empty", "--bucket", "file://" + empty}, 0},
		{append([]string{"verify", "--scrub"}, h4S3Flags(srv, "s3://no-such-bucket-h4")...), 2},
		{append([]string{"verify", "--scrub"}, h4S3Flags(srv, "s3://"+emptyBucket)...), 1},
		{append([]string{"verify", "--scrub"}, h4S3Flags(srv, "s3://"+emptyBucket+"/typo")...), 1},
		{[]string{"verify", empty}, 1},
		{[]string{"verify", notKafka}, 1},
		{[]string{"verify", "--allow-empty", empty}, 0},
		{[]string{"verify", "--scrub", "--sample", "-1", "--bucket", "file://" + empty}, 2},
		{[]string{"verify", "--scrub", "--sample", "0", "--bucket", "file://" + empty}, 2},
		{[]string{"verify", "--scrub", "--sample", "5", "--bucket", "file://" + empty}, 2},
		{[]string{"verify", "--scrub", "--sample", "NaN", "--bucket", "file://" + empty}, 2},
	} {
		out, code := h4Run(t, srv, tc.args...)
		if code != tc.want {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, tc.want, out)
		}
		if code != 0 && strings.Contains(out, "0 files checked: 0 corrupt") && !strings.Contains(out, "nothing") {
			t.Errorf("%v: exit %d but no word of nothing checked:\n%s", tc.args, code, out)
		}
	}
	if _, err := os.Stat(mistyped); err == nil {
		t.Errorf("verify --scrub created the mistyped archive dir %s", mistyped)
	}
}
