package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A side file (.index) truncated between its stat and its read: the
// commit fails naming the file, it does not commit a version whose file is
// shorter than the one the agent saw (whatever the store's PutFile checks).
func TestH37CommitSideFileTruncated(t *testing.T) {
	ctx := context.Background()
	logData, err := os.ReadFile(filepath.Join(h22Fixture, "00000000000000000000.log"))
	if err != nil {
		t.Fatal(err)
	}
	b := newTestLocal(t)
	req, _ := h22Request(t, logData)
	idx, err := os.ReadFile(filepath.Join(h22Fixture, req.Files[1].Name))
	if err != nil || len(idx) < 8 {
		t.Fatalf("fixture index: %v", err)
	}
	req.Files[1].R = bytes.NewReader(idx[:len(idx)-8]) // Size stays the stat's
	res, err := Commit(ctx, &h22Store{b: b}, req)
	if err == nil || !strings.Contains(err.Error(), req.Files[1].Name) {
		t.Fatalf("commit of a truncated index: %+v %v", res, err)
	}
	for _, k := range h22Keys(t, b) {
		if strings.HasSuffix(k, ManifestName) || strings.HasSuffix(k, ".sv2") {
			t.Errorf("left behind: %s", k)
		}
	}
}
