package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestH10FreshRestoreResumesNothing: a restore into an empty target never
// claims it resumed files (a file several segments' manifests carry, such
// as leader-epoch-checkpoint, is fetched once, not "resumed" from itself);
// an interrupted-and-rerun restore is the only thing that resumes.
func TestH10FreshRestoreResumesNothing(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(4), bucket, nil)
	target := filepath.Join(t.TempDir(), "data")
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "-t", target, "--json")
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	var rep struct {
		Segments int `json:"segments"`
		Files    int `json:"files"`
		Resumed  int `json:"resumed_files"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Segments == 0 || rep.Resumed != 0 {
		t.Errorf("fresh restore: %+v, want segments restored and 0 resumed files\n%s", rep, out)
	}
}
