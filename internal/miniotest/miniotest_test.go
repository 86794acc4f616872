package miniotest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestStartRestartCorrupt(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	b := s.NewBucket(t)
	if _, err := s.Client().PutObject(ctx, b, "k", bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{UserMetadata: map[string]string{"sha256": "x"}}); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	s.CorruptObject(t, b, "k", func(p []byte) []byte { p[0] ^= 0xff; return p })
	obj, err := s.Client().GetObject(ctx, b, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := obj.Stat()
	if string(got) == "hello" || len(got) != 5 || st.UserMetadata["Sha256"] != "x" {
		t.Fatalf("got %q %v", got, st.UserMetadata)
	}
	if s.DataDir() == "" || s.Endpoint() == "" {
		t.Fatal("accessors")
	}
}

func TestTLS(t *testing.T) {
	s := StartWithOptions(t, Options{TLS: true})
	b := s.NewBucket(t)
	if _, err := s.Client().PutObject(context.Background(), b, "k", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.CAFile() == "" || s.URL()[:8] != "https://" {
		t.Fatal(s.URL())
	}
}

// fakeTB records how Start gave up.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func startFake(t *testing.T) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
	return f
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("SEGVAULT_MINIO_BIN", "/nonexistent/minio")
	t.Setenv("CI", "")
	if f := startFake(t); !f.skipped || f.failed || !strings.Contains(f.msg, "run make tools") {
		t.Fatalf("without CI: skipped=%v failed=%v %q", f.skipped, f.failed, f.msg)
	}
	t.Setenv("CI", "true")
	if f := startFake(t); f.skipped || !f.failed {
		t.Fatalf("in CI: skipped=%v failed=%v %q", f.skipped, f.failed, f.msg)
	}
	// A binary that exits at once does not start either.
	t.Setenv("SEGVAULT_MINIO_BIN", "/bin/false")
	if f := startFake(t); f.skipped || !f.failed || !strings.Contains(f.msg, "exited") {
		t.Fatalf("broken binary in CI: skipped=%v failed=%v %q", f.skipped, f.failed, f.msg)
	}
}
