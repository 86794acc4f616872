package uploader

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"

	"github.com/segvault/segvault/internal/miniotest"
)

// A range whose end overflows int64 (a hostile chunk offset) is
// ErrRangeEnd on every store, not an opaque error or a read at a wrapped
// position.
func TestH37GetRangeOverflow(t *testing.T) {
	ctx := context.Background()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := miniotest.Start(t)
	s := newTestS3(t, srv, srv.NewBucket(t), nil)
	for name, b := range map[string]Bucket{"local": l, "s3": s} {
		if err := b.Create(ctx, "k", bytes.NewReader([]byte("0123456789")), 10, PutOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int64{{math.MaxInt64 - 5, 100}, {math.MaxInt64, 1}, {5, math.MaxInt64}} {
			rc, err := GetRange(ctx, b, "k", r[0], r[1])
			if err == nil {
				rc.Close()
			}
			if !errors.Is(err, ErrRangeEnd) {
				t.Errorf("%s: range %d+%d: %v, want ErrRangeEnd", name, r[0], r[1], err)
			}
		}
	}
}
