package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/segment"
)

// h11OtherGaps reports whether restore output names a gap other than the
// unarchived active segment at the end of a log (restore.PartitionPlan.TailAt),
// which every archive of a live broker has.
func h11OtherGaps(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "GAP") && !strings.Contains(l, "not archived: the broker's log end was") {
			return true
		}
	}
	return false
}

// TestH11TailNotArchivedWholeBroker: the agent never archives the active
// segment, so the root checkpoints it captured name a log end past the
// archive. The dry-run shows the gap; a whole-broker rebuild ends each log
// with an empty segment at that log end and its high watermark there; a
// --to-offset restore leaves the tail out.
func TestH11TailNotArchivedWholeBroker(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	res := h5Archive(t, h5Config(3), bucket, nil)
	base := []string{"restore", "--bucket", bucket, "--broker", "3", "--whole-broker", "--allow-no-metadata"}
	target := filepath.Join(t.TempDir(), "data")
	out, errOut, code := h5Run(t, nil, append(base, "--dry-run", "-t", target)...)
	if code != 0 {
		t.Fatalf("dry-run: exit %d\n%s\n%s", code, out, errOut)
	}
	for p := int32(0); p < 2; p++ {
		e := res.Partition("orders", p).LogEndOffset
		if !strings.Contains(out, fmt.Sprintf("..%d: not archived: the broker's log end was %d", e-1, e)) {
			t.Errorf("dry-run does not show the unarchived tail of orders-%d (log end %d):\n%s", p, e, out)
		}
	}
	out, errOut, code = h5Run(t, nil, append(base, "-t", target)...)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	data, err := os.ReadFile(filepath.Join(target, index.ReplicationOffsetFile))
	if err != nil {
		t.Fatal(err)
	}
	rp, err := index.ParseOffsetCheckpoint(index.ReplicationOffsetFile, data)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 2; p++ {
		e := res.Partition("orders", p).LogEndOffset
		dir := filepath.Join(target, fmt.Sprintf("orders-%d", p))
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		last := logs[len(logs)-1]
		if filepath.Base(last) != segment.FormatName(e, segment.KindLog) {
			t.Errorf("orders-%d: last segment %s, want an empty one at the log end %d", p, last, e)
		} else if fi, err := os.Stat(last); err != nil || fi.Size() != 0 {
			t.Errorf("orders-%d: %s not empty: %v", p, last, err)
		}
		for _, en := range rp {
			if en.Topic == "orders" && en.Partition == p && en.Offset != e {
				t.Errorf("orders-%d: high watermark %d, log end %d", p, en.Offset, e)
			}
		}
	}
	cut := filepath.Join(t.TempDir(), "cut")
	out, errOut, code = h5Run(t, nil, append(base, "--dry-run", "--to-offset", "100", "-t", cut)...)
	if code != 0 || strings.Contains(out, "not archived") {
		t.Fatalf("--to-offset dry-run: exit %d (shows the tail a cut leaves out?)\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = h5Run(t, nil, append(base, "--to-offset", "100", "-t", cut)...)
	if code != 0 || strings.Contains(out, "not archived") {
		t.Fatalf("--to-offset restore: exit %d (reports the tail?)\n%s\n%s", code, out, errOut)
	}
	for p := int32(0); p < 2; p++ {
		e := res.Partition("orders", p).LogEndOffset
		if _, err := os.Stat(filepath.Join(cut, fmt.Sprintf("orders-%d", p), segment.FormatName(e, segment.KindLog))); err == nil {
			t.Errorf("--to-offset restore wrote the tail segment of orders-%d", p)
		}
	}
}
