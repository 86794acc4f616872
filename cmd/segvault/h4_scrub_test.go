package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

// h4FlakyBucket flips one byte of what Get returns for a .log object: on
// its first read only (a read failing in transit), or on every read.
type h4FlakyBucket struct {
	uploader.Bucket
	always bool
	mu     sync.Mutex
	reads  map[string]int
}

func (f *h4FlakyBucket) Get(ctx context.Context, key string) (io.ReadCloser, uploader.ObjectInfo, error) {
	rc, oi, err := f.Bucket.Get(ctx, key)
	if err != nil || !strings.Contains(key, ".log") {
		return rc, oi, err
	}
	f.mu.Lock()
	f.reads[key]++
	n := f.reads[key]
	f.mu.Unlock()
	if n > 1 && !f.always {
		return rc, oi, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, oi, err
	}
	data[len(data)/2] ^= 0x40
	return io.NopCloser(bytes.NewReader(data)), oi, nil
}

// TestH4ScrubRetriesOnce: an object whose first read comes back damaged
// but whose second read is intact passes the scrub (with a note); one that
// is damaged on every read is corrupt.
func TestH4ScrubRetriesOnce(t *testing.T) {
	dir := copyLogDir(t)
	arch := filepath.Join(t.TempDir(), "archive")
	if out, errOut, code := runSegvault(t, "agent", "--once", "--log-dirs", dir, "--bucket", "file://"+arch, "--state-dir", t.TempDir(),
		"--settle-time", "0", "--listen", ""); code != 0 {
		t.Fatalf("agent: exit %d\n%s\n%s", code, out, errOut)
	}
	local, err := uploader.NewLocal(arch)
	if err != nil {
		t.Fatal(err)
	}
	for _, always := range []bool{false, true} {
		fb := &h4FlakyBucket{Bucket: local, always: always, reads: map[string]int{}}
		res, err := scrub(context.Background(), fb, archive.NewLayout(""), archive.DecodeOptions{}, scrubSelection{fraction: 1}, false)
		if err != nil {
			t.Fatal(err)
		}
		logs := 0
		for _, r := range res {
			if !strings.Contains(r.Path, ".log") {
				continue
			}
			logs++
			switch {
			case !always && (r.Status != "ok" || !strings.Contains(r.Detail, "second read")):
				t.Errorf("transient damage of %s: status %s %q, want ok after a second read", r.Path, r.Status, r.Detail)
			case always && r.Status != "corrupt":
				t.Errorf("persistent damage of %s: status %s %q, want corrupt", r.Path, r.Status, r.Detail)
			}
		}
		if logs == 0 {
			t.Fatalf("no .log object scrubbed: %+v", res)
		}
	}
}
