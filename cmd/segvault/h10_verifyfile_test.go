package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestH10VerifyNonKafkaFile: `verify FILE` of a file that is no Kafka file
// (a mistyped path such as /etc/passwd) checked nothing: exit 1 naming it,
// not "OK unknown, 1 files checked" and exit 0; --allow-empty accepts it.
func TestH10VerifyNonKafkaFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(p, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"segvault", "verify", p}, &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), "nothing checked in "+p) {
		t.Errorf("verify %s: exit %d, want 1 'nothing checked'\n%s\n%s", p, code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"segvault", "verify", "--allow-empty", p}, &out, &errOut); code != exitOK {
		t.Errorf("verify --allow-empty %s: exit %d\n%s\n%s", p, code, out.String(), errOut.String())
	}
}
