package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestH10DryRunJSONLists: restore --dry-run --json gives every list as a
// JSON array, empty ones included ("left_out": [], as "existing_dirs": []),
// never null, so a script can iterate them without a special case.
func TestH10DryRunJSONLists(t *testing.T) {
	bucket := "file://" + filepath.Join(t.TempDir(), "bucket")
	h5Archive(t, h5Config(4), bucket, nil)
	out, errOut, code := h5Run(t, nil, "restore", "--bucket", bucket, "-t", t.TempDir(), "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("restore --dry-run --json: exit %d\n%s\n%s", code, out, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, k := range []string{"partitions", "existing_dirs", "left_out"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("%q is %#v, want a JSON array\n%s", k, doc[k], out)
		}
	}
}
