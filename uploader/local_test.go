package uploader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestLocal(t *testing.T) Bucket {
	t.Helper()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// xattrsWork probes whether the test filesystem keeps user xattrs.
func xattrsWork(t *testing.T) bool {
	l := newTestLocal(t)
	mustCreate(t, l, "probe", []byte("x"), PutOptions{SHA256: "ab"})
	st, err := l.Stat(context.Background(), "probe")
	return err == nil && st.Metadata[MetaSHA256] == "ab"
}

func TestLocalContract(t *testing.T) {
	caps := storeCaps{metadata: xattrsWork(t)}
	if !caps.metadata {
		t.Log("filesystem without user xattrs: metadata checks skipped")
	}
	testBucketContract(t, newTestLocal, caps)
}

func TestLocalKeyValidation(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	l, err := NewLocal(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"", "/abs", "a//b", "a/", "./a", "a/./b", "..", "../escape", "a/../../escape", "a\\b", "a\x00b", tempPrefix + "x", "d/" + tempPrefix + "y"}
	for _, k := range bad {
		if err := l.Create(ctx, k, bytes.NewReader([]byte("x")), 1, PutOptions{}); err == nil {
			t.Errorf("create %q accepted", k)
		}
		if _, err := l.Stat(ctx, k); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("stat %q: %v, want a validation error", k, err)
		}
		if _, _, err := l.Get(ctx, k); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("get %q: %v, want a validation error", k, err)
		}
		if err := l.Delete(ctx, k); err == nil {
			t.Errorf("delete %q accepted", k)
		}
	}
	if err := l.List(ctx, "../", func(ObjectInfo) error { return nil }); err == nil {
		t.Error("list ../ accepted")
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Fatalf("something escaped the root: %v", entries)
	}
	for _, good := range []string{"a", "a/b.c", "v1/c/topics/t-1/0/x/segments/00000000000000000000/1-abc/manifest.json", ".hidden", "a..b"} {
		if err := ValidateKey(good); err != nil {
			t.Errorf("ValidateKey(%q): %v", good, err)
		}
	}
}

func TestLocalSweepAndNoLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o750); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "a", "b", tempPrefix+"deadbeef")
	young := filepath.Join(dir, "a", tempPrefix+"cafe")
	for _, p := range []string{stale, young} {
		if err := os.WriteFile(p, []byte("partial"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * tempMaxAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temp file not swept: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Fatalf("a temp file that may still be written was swept: %v", err)
	}
	if err := l.List(ctx, "", func(oi ObjectInfo) error { return fmt.Errorf("listed %s", oi.Key) }); err != nil {
		t.Fatal(err)
	}
	// A failed create (short body) and a refused one (exists) leave no temp file.
	_ = l.Create(ctx, "a/b/obj", bytes.NewReader([]byte("abc")), 5, PutOptions{})
	mustCreate(t, l, "a/b/obj", []byte("abc"), PutOptions{})
	_ = l.Create(ctx, "a/b/obj", bytes.NewReader([]byte("xyz")), 3, PutOptions{})
	entries, err := os.ReadDir(filepath.Join(dir, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("leftover %s", e.Name())
		}
	}
	if len(entries) != 1 {
		t.Errorf("entries %v", entries)
	}
}

func TestLocalCancelledCreate(t *testing.T) {
	l := newTestLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Create(ctx, "k", bytes.NewReader([]byte("x")), 1, PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if _, err := l.Stat(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat: %v", err)
	}
}

func TestOpenURLs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := Open(ctx, "file://"+dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != "file://"+dir {
		t.Errorf("String() = %q", b.String())
	}
	b, err = Open(ctx, "s3://my-bucket", OpenOptions{S3: S3Options{Endpoint: "http://127.0.0.1:9", AccessKey: "a", SecretKey: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != "s3://my-bucket at http://127.0.0.1:9" {
		t.Errorf("String() = %q", b.String())
	}
	for _, bad := range []string{"", "relative/dir", "file://relative", "file:relative", "file:///a/../b", "s3://", "s3://Bad_Bucket", "s3://bucket/prefix", "s3://bucket?region=x", "gs://bucket", "s3://user:pw@bucket", "http://host/bucket"} {
		if _, err := Open(ctx, bad, OpenOptions{}); err == nil {
			t.Errorf("Open(%q) accepted", bad)
		}
	}
	store, prefix, err := SplitURL("s3://bkt/some/prefix/")
	if err != nil || store != "s3://bkt" || prefix != "some/prefix/" {
		t.Errorf("SplitURL: %q %q %v", store, prefix, err)
	}
	store, prefix, err = SplitURL("file:///var/lib/segvault")
	if err != nil || store != "file:///var/lib/segvault" || prefix != "" {
		t.Errorf("SplitURL file: %q %q %v", store, prefix, err)
	}
}

func TestS3OptionsValidate(t *testing.T) {
	for _, o := range []S3Options{
		{},
		{Bucket: "b", AccessKey: "x"},
		{Bucket: "b", SSE: "SSE-X"},
		{Bucket: "b", SSE: "SSE-C"},
		{Bucket: "b", RetentionMode: "FOREVER", RetentionDays: 1},
		{Bucket: "b", RetentionMode: "GOVERNANCE"},
		{Bucket: "b", RetentionDays: 3},
		{Bucket: "b", PartSize: 1 << 20},
		{Bucket: "b", Endpoint: "https://host/path"},
		{Bucket: "b", Endpoint: "ftp://host"},
	} {
		if _, err := NewS3(o); err == nil {
			t.Errorf("NewS3(%+v) accepted", o)
		}
	}
}
