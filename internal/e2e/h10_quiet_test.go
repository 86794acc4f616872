package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/segment"
)

// TestH10QuietPartitionNotWholeBroker: a partition the broker's captured
// root checkpoints name but the archive holds no segment of (a quiet topic
// whose only segment is still active) comes back empty at its last known
// log end in a partition-level restore too (--topic, --broker without
// --whole-broker), not absent, so new writes cannot reuse offsets.
func TestH10QuietPartitionNotWholeBroker(t *testing.T) {
	bucketDir := filepath.Join(t.TempDir(), "bucket")
	bucket := "file://" + bucketDir
	cfg := h5Config(4)
	cfg.Topics = append(cfg.Topics, brokersim.TopicSpec{Name: "quiet", Codec: "none", Records: 25})
	h5Archive(t, cfg, bucket, nil)
	for name, extra := range map[string][]string{
		"topic":  {"--topic", "^(orders|quiet)$"},
		"broker": {"--broker", "4"},
	} {
		t.Run(name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "data")
			args := append([]string{"restore", "--bucket", bucket, "-t", target}, extra...)
			out, errOut, code := h5Run(t, nil, args...)
			if code != 0 {
				t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
			}
			if _, err := os.Stat(filepath.Join(target, "orders-0")); err != nil {
				t.Fatalf("orders-0 not restored: %v\n%s\n%s", err, out, errOut)
			}
			logs, _ := filepath.Glob(filepath.Join(target, "quiet-0", "*.log"))
			if len(logs) != 1 || filepath.Base(logs[0]) != segment.FormatName(25, segment.KindLog) {
				t.Fatalf("quiet-0: restored segments %v, want one empty segment at offset 25\n%s\n%s", logs, out, errOut)
			}
			if fi, err := os.Stat(logs[0]); err != nil || fi.Size() != 0 {
				t.Errorf("quiet-0: %s not empty: %v", logs[0], err)
			}
		})
	}
}
