package uploader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/segvault/segvault/internal/miniotest"
)

// h28ConditionalContract is what every ConditionalWriter must do; newStore
// returns an empty store.
func h28ConditionalContract(t *testing.T, newStore func(t *testing.T) Bucket) {
	ctx := context.Background()
	cw := func(t *testing.T, b Bucket) ConditionalWriter {
		c, ok := AsConditional(b)
		if !ok {
			t.Fatalf("%s has no conditional writer", b)
		}
		return c
	}
	t.Run("CreateOnlyReturnsETag", func(t *testing.T) {
		b := newStore(t)
		c := cw(t, b)
		etag, err := c.CreateETag(ctx, "claims/t/0.json", []byte(`{"broker":1}`), PutOptions{ContentType: "application/json"})
		if err != nil || etag == "" {
			t.Fatalf("create: %q %v", etag, err)
		}
		st, err := b.Stat(ctx, "claims/t/0.json")
		if err != nil || st.ETag != etag {
			t.Fatalf("stat etag %q, create returned %q (%v)", st.ETag, etag, err)
		}
		if _, info := mustGet(t, b, "claims/t/0.json"); info.ETag != etag {
			t.Fatalf("get etag %q, want %q", info.ETag, etag)
		}
		var listed string
		if err := b.List(ctx, "claims/", func(oi ObjectInfo) error { listed = oi.ETag; return nil }); err != nil || listed != etag {
			t.Fatalf("list etag %q, want %q (%v)", listed, etag, err)
		}
		if _, err := c.CreateETag(ctx, "claims/t/0.json", []byte(`{"broker":2}`), PutOptions{}); !errors.Is(err, ErrExists) {
			t.Fatalf("second create: %v", err)
		}
		if got, _ := mustGet(t, b, "claims/t/0.json"); string(got) != `{"broker":1}` {
			t.Fatalf("content changed: %s", got)
		}
	})
	t.Run("ReplaceIfMatch", func(t *testing.T) {
		b := newStore(t)
		c := cw(t, b)
		e1, err := c.CreateETag(ctx, "k", []byte("one"), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e2, err := c.ReplaceIfMatch(ctx, "k", []byte("two"), e1, PutOptions{})
		if err != nil || e2 == "" || e2 == e1 {
			t.Fatalf("replace: %q (old %q) %v", e2, e1, err)
		}
		if got, info := mustGet(t, b, "k"); string(got) != "two" || info.ETag != e2 {
			t.Fatalf("after replace: %q %q", got, info.ETag)
		}
		// The stale etag no longer matches; nothing is written.
		if _, err := c.ReplaceIfMatch(ctx, "k", []byte("three"), e1, PutOptions{}); !errors.Is(err, ErrPreconditionFailed) {
			t.Fatalf("stale etag: %v", err)
		}
		if got, _ := mustGet(t, b, "k"); string(got) != "two" {
			t.Fatalf("stale replace wrote: %q", got)
		}
		// Same size and content as a previous version: still a new etag.
		e3, err := c.ReplaceIfMatch(ctx, "k", []byte("one"), e2, PutOptions{})
		if err != nil || e3 == e2 {
			t.Fatalf("replace back: %q %v", e3, err)
		}
		if _, err := c.ReplaceIfMatch(ctx, "missing", []byte("x"), e1, PutOptions{}); !errors.Is(err, ErrPreconditionFailed) {
			t.Fatalf("missing key: %v", err)
		}
		if _, err := b.Stat(ctx, "missing"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("replace of a missing key created it: %v", err)
		}
	})
	t.Run("ConcurrentReplaceOneWins", func(t *testing.T) {
		b := newStore(t)
		c := cw(t, b)
		e0, err := c.CreateETag(ctx, "race", []byte("v0"), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []string
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf("writer %d", i)
				_, err := c.ReplaceIfMatch(ctx, "race", []byte(body), e0, PutOptions{})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, body)
				case !errors.Is(err, ErrPreconditionFailed):
					t.Errorf("writer %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%d writers won: %v", len(won), won)
		}
		if got, _ := mustGet(t, b, "race"); string(got) != won[0] {
			t.Fatalf("content %q, winner %q", got, won[0])
		}
	})
	t.Run("RapidReplacesNeverRepeatAnETag", func(t *testing.T) {
		b := newStore(t)
		c := cw(t, b)
		etag, err := c.CreateETag(ctx, "rapid", []byte("same"), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{etag: true}
		for i := range 50 {
			if etag, err = c.ReplaceIfMatch(ctx, "rapid", []byte("same"), etag, PutOptions{}); err != nil {
				t.Fatalf("replace %d: %v", i, err)
			}
			if seen[etag] && !bytes.Equal([]byte(etag), nil) {
				// S3 ETags are content MD5s: identical bodies share one. Only
				// the Local store promises fresh etags for identical bodies.
				if _, local := b.(*Local); local {
					t.Fatalf("replace %d: etag %s repeated", i, etag)
				}
			}
			seen[etag] = true
		}
	})
}

func TestH28ConditionalLocal(t *testing.T) {
	h28ConditionalContract(t, newTestLocal)
}

func TestH28ConditionalThroughWrappers(t *testing.T) {
	l := newTestLocal(t)
	c, ok := AsConditional(WithRateLimit(WithRetry(l, RetryPolicy{}), 1<<20))
	if !ok || c != l.(ConditionalWriter) {
		t.Fatalf("wrapped local store: %v %v", c, ok)
	}
	if _, ok := AsConditional(struct{ Bucket }{l}); ok {
		t.Fatal("an unknown wrapper must not be looked through")
	}
}

func TestH28ConditionalS3(t *testing.T) {
	srv := miniotest.Start(t)
	h28ConditionalContract(t, func(t *testing.T) Bucket {
		return newTestS3(t, srv, srv.NewBucket(t), nil)
	})
}
