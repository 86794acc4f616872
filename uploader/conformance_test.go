package uploader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// storeCaps says what a store under test supports beyond the contract.
type storeCaps struct {
	metadata bool // Stat returns PutOptions metadata
}

// testBucketContract is the one contract every Bucket must pass. newBucket
// returns an empty store for each subtest.
func testBucketContract(t *testing.T, newBucket func(t *testing.T) Bucket, caps storeCaps) {
	ctx := context.Background()

	t.Run("CreateGetStat", func(t *testing.T) {
		b := newBucket(t)
		data := []byte("hello, archive")
		mustCreate(t, b, "a/b/c.log", data, PutOptions{Metadata: map[string]string{"Raw-Size": "14"}})
		got, info := mustGet(t, b, "a/b/c.log")
		if !bytes.Equal(got, data) || info.Size != int64(len(data)) || info.Key != "a/b/c.log" {
			t.Fatalf("get: %q %+v", got, info)
		}
		st, err := b.Stat(ctx, "a/b/c.log")
		if err != nil || st.Size != int64(len(data)) || st.ModTime.IsZero() {
			t.Fatalf("stat: %+v %v", st, err)
		}
		if caps.metadata {
			want := map[string]string{MetaSHA256: sha256Hex(data), MetaCRC32C: crcHex(data), "raw-size": "14"}
			for k, v := range want {
				if st.Metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q (all: %v)", k, st.Metadata[k], v, st.Metadata)
				}
			}
		}
	})

	t.Run("EmptyObject", func(t *testing.T) {
		b := newBucket(t)
		mustCreate(t, b, "empty", nil, PutOptions{})
		got, info := mustGet(t, b, "empty")
		if len(got) != 0 || info.Size != 0 {
			t.Fatalf("got %d bytes, info %+v", len(got), info)
		}
	})

	t.Run("CreateOnly", func(t *testing.T) {
		b := newBucket(t)
		mustCreate(t, b, "k", []byte("first"), PutOptions{})
		err := b.Create(ctx, "k", bytes.NewReader([]byte("second!")), 7, putOpts([]byte("second!")))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("second create: %v, want ErrExists", err)
		}
		got, _ := mustGet(t, b, "k")
		if string(got) != "first" {
			t.Fatalf("object changed to %q", got)
		}
	})

	t.Run("ConcurrentCreate", func(t *testing.T) {
		b := newBucket(t)
		const n = 6
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				data := []byte(fmt.Sprintf("writer %d", i))
				errs[i] = b.Create(ctx, "race", bytes.NewReader(data), int64(len(data)), putOpts(data))
			})
		}
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
				got, _ := mustGet(t, b, "race")
				if string(got) != fmt.Sprintf("writer %d", i) {
					t.Errorf("winner %d but object is %q", i, got)
				}
			case !errors.Is(err, ErrExists):
				t.Errorf("writer %d: %v", i, err)
			}
		}
		if winners != 1 {
			t.Fatalf("%d creates succeeded, want exactly 1", winners)
		}
	})

	t.Run("ShortBodyLeavesNothing", func(t *testing.T) {
		b := newBucket(t)
		err := b.Create(ctx, "short", bytes.NewReader([]byte("abc")), 10, PutOptions{})
		if err == nil {
			t.Fatal("create with a short body succeeded")
		}
		if _, err := b.Stat(ctx, "short"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after failed create: stat %v, want ErrNotFound", err)
		}
		mustCreate(t, b, "short", []byte("abc"), PutOptions{}) // the key is still free
	})

	t.Run("SizeBytesFromPosition", func(t *testing.T) {
		b := newBucket(t)
		r := bytes.NewReader([]byte("skip|object|trailing"))
		if _, err := r.Seek(5, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if err := b.Create(ctx, "pos", r, 6, putOpts([]byte("object"))); err != nil {
			t.Fatal(err)
		}
		if got, _ := mustGet(t, b, "pos"); string(got) != "object" {
			t.Fatalf("stored %q, want %q", got, "object")
		}
	})

	t.Run("CreateVerified", func(t *testing.T) {
		b := newBucket(t)
		data := []byte("segment bytes")
		if err := CreateVerified(ctx, b, "v", bytes.NewReader(data), int64(len(data)), putOpts(data)); err != nil {
			t.Fatal(err)
		}
		// Identical content: success, from metadata or by hashing.
		if err := CreateVerified(ctx, b, "v", bytes.NewReader(data), int64(len(data)), putOpts(data)); err != nil {
			t.Fatalf("identical: %v", err)
		}
		// Seekable reader without digests: hashed first.
		if err := CreateVerified(ctx, b, "v", bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
			t.Fatalf("identical, no digests: %v", err)
		}
		other := []byte("segment BYTES")
		err := CreateVerified(ctx, b, "v", bytes.NewReader(other), int64(len(other)), putOpts(other))
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("different: %v, want ErrConflict", err)
		}
		longer := []byte("segment bytes, longer")
		if err := CreateVerified(ctx, b, "v", bytes.NewReader(longer), int64(len(longer)), putOpts(longer)); !errors.Is(err, ErrConflict) {
			t.Fatalf("different size: %v, want ErrConflict", err)
		}
		got, _ := mustGet(t, b, "v")
		if !bytes.Equal(got, data) {
			t.Fatalf("object overwritten: %q", got)
		}
	})

	t.Run("CreateVerifiedWithoutMetadata", func(t *testing.T) {
		b := newBucket(t)
		data := []byte("written by something that records no digests")
		mustCreate(t, b, "nm", data, PutOptions{})
		if err := CreateVerified(ctx, b, "nm", bytes.NewReader(data), int64(len(data)), putOpts(data)); err != nil {
			t.Fatalf("identical: %v", err)
		}
		other := bytes.ToUpper(data)
		if err := CreateVerified(ctx, b, "nm", bytes.NewReader(other), int64(len(other)), putOpts(other)); !errors.Is(err, ErrConflict) {
			t.Fatalf("different: %v, want ErrConflict", err)
		}
	})

	t.Run("List", func(t *testing.T) {
		b := newBucket(t)
		keys := []string{"p/b", "p/a0", "p/a/c/d", "p/a.x", "p/a/b", "q/z", "p0"}
		for _, k := range keys {
			mustCreate(t, b, k, []byte(k), PutOptions{})
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"", []string{"p/a.x", "p/a/b", "p/a/c/d", "p/a0", "p/b", "p0", "q/z"}},
			{"p/", []string{"p/a.x", "p/a/b", "p/a/c/d", "p/a0", "p/b"}},
			{"p", []string{"p/a.x", "p/a/b", "p/a/c/d", "p/a0", "p/b", "p0"}},
			{"p/a", []string{"p/a.x", "p/a/b", "p/a/c/d", "p/a0"}},
			{"p/a/", []string{"p/a/b", "p/a/c/d"}},
			{"p/a/c/d", []string{"p/a/c/d"}},
			{"q/", []string{"q/z"}},
			{"r/", nil},
			{"p/zz/", nil},
		} {
			var got []string
			err := b.List(ctx, tc.prefix, func(oi ObjectInfo) error {
				got = append(got, oi.Key)
				if oi.Size != int64(len(oi.Key)) {
					t.Errorf("list %q: %s size %d", tc.prefix, oi.Key, oi.Size)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("list %q: %v", tc.prefix, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("list %q = %q, want %q", tc.prefix, got, tc.want)
			}
		}
		stop := errors.New("stop")
		n := 0
		err := b.List(ctx, "", func(ObjectInfo) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("list stop: %v after %d", err, n)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		b := newBucket(t)
		mustCreate(t, b, "d/x", []byte("x"), PutOptions{})
		if err := b.Delete(ctx, "d/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Stat(ctx, "d/x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat after delete: %v", err)
		}
		if err := b.Delete(ctx, "d/x"); err != nil {
			t.Fatalf("delete missing: %v", err)
		}
		mustCreate(t, b, "d/x", []byte("again"), PutOptions{})
		got, _ := mustGet(t, b, "d/x")
		if string(got) != "again" {
			t.Fatalf("recreated: %q", got)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		b := newBucket(t)
		mustCreate(t, b, "exists/file", []byte("x"), PutOptions{})
		for _, k := range []string{"missing", "exists/missing", "exists/file/below"} {
			if _, _, err := b.Get(ctx, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("get %s: %v, want ErrNotFound", k, err)
			}
			if _, err := b.Stat(ctx, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("stat %s: %v, want ErrNotFound", k, err)
			}
		}
	})

	t.Run("Stream", func(t *testing.T) { testStreamContract(t, newBucket) })

	t.Run("String", func(t *testing.T) {
		b := newBucket(t)
		if s := b.String(); s == "" || strings.Contains(s, "secret") {
			t.Fatalf("String() = %q", s)
		}
	})
}

func putOpts(data []byte) PutOptions {
	return PutOptions{SHA256: sha256Hex(data), CRC32C: crcHex(data)}
}

func sha256Hex(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

func crcHex(p []byte) string { return formatCRC(crc32.Checksum(p, castagnoli)) }

func mustCreate(t testing.TB, b BucketWriter, key string, data []byte, opts PutOptions) {
	t.Helper()
	if opts.SHA256 == "" && opts.Metadata != nil {
		opts.SHA256, opts.CRC32C = sha256Hex(data), crcHex(data)
	}
	if err := b.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
}

func mustGet(t testing.TB, b BucketReader, key string) ([]byte, ObjectInfo) {
	t.Helper()
	rc, info, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data, info
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testStreamContract: native streaming uploads and ranged reads, directly
// and through the retry and rate-limit wrappers.
func testStreamContract(t *testing.T, newBucket func(t *testing.T) Bucket) {
	ctx := context.Background()
	wrappers := map[string]func(Bucket) Bucket{
		"plain": func(b Bucket) Bucket { return b },
		"retry": func(b Bucket) Bucket { return WithRetry(b, fastPolicy(3)) },
		"rate":  func(b Bucket) Bucket { return WithRateLimit(b, 1<<30) },
	}
	data := randBytes(7, 2*MinPartSize+12345)
	parts := [][]byte{data[:MinPartSize], data[MinPartSize : 2*MinPartSize], data[2*MinPartSize:]}
	for name, wrap := range wrappers {
		t.Run(name, func(t *testing.T) {
			b := wrap(newBucket(t))
			if _, ok := b.(StreamCreator); !ok {
				t.Fatalf("%T has no native CreateStream", b)
			}
			if _, ok := b.(RangeGetter); !ok {
				t.Fatalf("%T has no native GetRange", b)
			}
			st, err := CreateStream(ctx, b, "s/obj", PutOptions{Metadata: map[string]string{"x": "1"}})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup // parts out of order and concurrently
			for i := len(parts) - 1; i >= 0; i-- {
				wg.Go(func() {
					if err := st.WritePart(ctx, i+1, parts[i], crcHex(parts[i])); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if _, err := b.Stat(ctx, "s/obj"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("object visible before Complete: %v", err)
			}
			if err := st.Complete(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ := mustGet(t, b, "s/obj")
			if !bytes.Equal(got, data) {
				t.Fatalf("streamed object differs (%d bytes, want %d)", len(got), len(data))
			}
			// Ranges, including one spanning parts and the last byte.
			for _, r := range [][2]int64{{0, 10}, {MinPartSize - 5, 10}, {int64(len(data)) - 1, 1}, {100, 0}, {0, int64(len(data))}} {
				rc, err := GetRange(ctx, b, "s/obj", r[0], r[1])
				if err != nil {
					t.Fatalf("range %v: %v", r, err)
				}
				p, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(p, data[r[0]:r[0]+r[1]]) {
					t.Fatalf("range %v: %d bytes, %v", r, len(p), err)
				}
			}
			for _, r := range [][2]int64{{int64(len(data)) - 1, 2}, {int64(len(data)), 1}, {int64(len(data)) + 10, 5}} {
				if rc, err := GetRange(ctx, b, "s/obj", r[0], r[1]); !errors.Is(err, ErrRangeEnd) {
					if err != nil {
						t.Fatalf("range %v past the end: %v, want ErrRangeEnd", r, err)
					}
					p, rerr := io.ReadAll(rc)
					rc.Close()
					t.Fatalf("range %v past the end: no error (%d bytes, %v)", r, len(p), rerr)
				}
			}
			if _, err := GetRange(ctx, b, "s/missing", 0, 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("range of a missing object: %v, want ErrNotFound", err)
			}

			// Create-only on Complete: a second stream to the same key loses.
			st2, err := CreateStream(ctx, b, "s/obj", PutOptions{})
			if err == nil {
				if err := st2.WritePart(ctx, 1, []byte("other"), crcHex([]byte("other"))); err != nil {
					t.Fatal(err)
				}
				err = st2.Complete(ctx)
			}
			if !errors.Is(err, ErrExists) {
				t.Fatalf("second stream to an existing key: %v, want ErrExists", err)
			}
			got, _ = mustGet(t, b, "s/obj")
			if !bytes.Equal(got, data) {
				t.Fatal("existing object changed by a losing stream")
			}

			// Abort leaves nothing.
			st3, err := CreateStream(ctx, b, "s/aborted", PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st3.WritePart(ctx, 1, parts[0], crcHex(parts[0])); err != nil {
				t.Fatal(err)
			}
			if err := st3.Abort(ctx); err != nil {
				t.Fatal(err)
			}
			if err := st3.Complete(ctx); err == nil {
				t.Fatal("Complete after Abort succeeded")
			}
			if _, err := b.Stat(ctx, "s/aborted"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("aborted stream left an object: %v", err)
			}

			// A part whose bytes do not match its CRC-32C is rejected.
			st4, err := CreateStream(ctx, b, "s/badcrc", PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			bad := crcHex(parts[2][1:])
			if err := st4.WritePart(ctx, 1, parts[2], bad); err == nil {
				t.Fatal("part with a wrong crc32c accepted")
			}
			_ = st4.Abort(ctx)
			if _, err := b.Stat(ctx, "s/badcrc"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("bad-crc stream left an object: %v", err)
			}
			var keys []string
			if err := b.List(ctx, "s/", func(oi ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys, []string{"s/obj"}) {
				t.Fatalf("objects after the stream tests: %v", keys)
			}
		})
	}
}
