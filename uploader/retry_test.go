package uploader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// faultBucket fails the first n calls of each operation with err, then
// delegates (a fault-injecting decorator embedding the interface).
type faultBucket struct {
	Bucket
	mu    sync.Mutex
	n     int
	err   error
	calls map[string]int
}

func newFaultBucket(b Bucket, n int, err error) *faultBucket {
	return &faultBucket{Bucket: b, n: n, err: err, calls: map[string]int{}}
}

func (f *faultBucket) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.calls[op] <= f.n {
		return fmt.Errorf("%s: injected: %w", op, f.err)
	}
	return nil
}

func (f *faultBucket) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *faultBucket) Create(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) error {
	if err := f.fail("create"); err != nil {
		// Consume part of the body, as a failed upload would.
		_, _ = io.CopyN(io.Discard, r, size/2)
		return err
	}
	return f.Bucket.Create(ctx, key, r, size, opts)
}

func (f *faultBucket) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	if err := f.fail("get"); err != nil {
		return nil, ObjectInfo{}, err
	}
	return f.Bucket.Get(ctx, key)
}

func (f *faultBucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := f.fail("stat"); err != nil {
		return ObjectInfo{}, err
	}
	return f.Bucket.Stat(ctx, key)
}

func (f *faultBucket) Delete(ctx context.Context, key string) error {
	if err := f.fail("delete"); err != nil {
		return err
	}
	return f.Bucket.Delete(ctx, key)
}

func fastPolicy(attempts int) RetryPolicy {
	return RetryPolicy{MaxAttempts: attempts, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
}

var (
	errSlowDown     = minio.ErrorResponse{Code: "SlowDown", StatusCode: 503, Message: "Please reduce your request rate."}
	errAccessDenied = minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403, Message: "Access Denied.", BucketName: "bkt"}
)

// testRetries runs the retry checks against any base store.
func testRetries(t *testing.T, newBase func(t *testing.T) Bucket) {
	ctx := context.Background()
	data := randBytes(7, 300<<10)

	t.Run("TransientThenSuccess", func(t *testing.T) {
		fb := newFaultBucket(newBase(t), 3, errSlowDown)
		var seen []int
		p := fastPolicy(5)
		p.OnRetry = func(op, key string, attempt int, err error, d time.Duration) { seen = append(seen, attempt) }
		b := WithRetry(fb, p)
		err := b.Create(ctx, "seg/0.log", bytes.NewReader(data), int64(len(data)), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := fb.count("create"); got != 4 {
			t.Errorf("create called %d times, want 4", got)
		}
		if len(seen) != 3 {
			t.Errorf("OnRetry attempts %v", seen)
		}
		// The body was rewound for every attempt: the object is intact.
		got, err := ReadAll(ctx, b, "seg/0.log", 1<<20)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back: %v", err)
		}
	})
	t.Run("TransientExhausted", func(t *testing.T) {
		fb := newFaultBucket(newBase(t), 100, errSlowDown)
		err := WithRetry(fb, fastPolicy(3)).Create(ctx, "k", bytes.NewReader(data), int64(len(data)), PutOptions{})
		if err == nil || fb.count("create") != 3 || !IsTransient(err) {
			t.Fatalf("err %v after %d creates", err, fb.count("create"))
		}
	})
	t.Run("PermanentNotRetried", func(t *testing.T) {
		fb := newFaultBucket(newBase(t), 100, errAccessDenied)
		err := WithRetry(fb, fastPolicy(5)).Create(ctx, "k", bytes.NewReader(data), int64(len(data)), PutOptions{})
		if err == nil || fb.count("create") != 1 {
			t.Fatalf("err %v after %d creates, want 1 attempt", err, fb.count("create"))
		}
		if msg := Explain(err); !bytes.Contains([]byte(msg), []byte("access denied to bkt")) {
			t.Errorf("Explain: %s", msg)
		}
	})
	t.Run("ExistsNotRetried", func(t *testing.T) {
		base := newBase(t)
		mustCreate(t, base, "x", []byte("x"), PutOptions{})
		fb := newFaultBucket(base, 0, nil)
		err := WithRetry(fb, fastPolicy(5)).Create(ctx, "x", bytes.NewReader([]byte("y")), 1, PutOptions{})
		if !errors.Is(err, ErrExists) || fb.count("create") != 1 {
			t.Fatalf("err %v after %d creates", err, fb.count("create"))
		}
	})
	t.Run("ReadPath", func(t *testing.T) {
		base := newBase(t)
		mustCreate(t, base, "r", []byte("read me"), PutOptions{})
		fb := newFaultBucket(base, 2, &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}})
		b := WithRetry(fb, fastPolicy(5))
		if got, _ := mustGet(t, b, "r"); string(got) != "read me" {
			t.Fatal(string(got))
		}
		if _, err := b.Stat(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if fb.count("get") != 3 || fb.count("stat") != 3 || fb.count("delete") != 3 {
			t.Errorf("calls %v", fb.calls)
		}
		// Not found is an answer, not a failure.
		fb2 := newFaultBucket(base, 0, nil)
		if _, err := WithRetry(fb2, fastPolicy(5)).Stat(ctx, "r"); !errors.Is(err, ErrNotFound) || fb2.count("stat") != 1 {
			t.Fatalf("stat missing: %v after %d", err, fb2.count("stat"))
		}
	})
	t.Run("NonSeekableBodyNotRetried", func(t *testing.T) {
		fb := newFaultBucket(newBase(t), 1, errSlowDown)
		err := WithRetry(fb, fastPolicy(5)).Create(ctx, "ns", struct{ io.Reader }{bytes.NewReader([]byte("abc"))}, 3, PutOptions{})
		if err == nil || fb.count("create") != 1 {
			t.Fatalf("err %v after %d creates", err, fb.count("create"))
		}
	})
	t.Run("CancelStopsRetrying", func(t *testing.T) {
		fb := newFaultBucket(newBase(t), 100, errSlowDown)
		cctx, cancel := context.WithCancel(ctx)
		p := RetryPolicy{MaxAttempts: 100, BaseDelay: time.Hour}
		p.OnRetry = func(string, string, int, error, time.Duration) { cancel() }
		_, err := WithRetry(fb, p).Stat(cctx, "x")
		if !errors.Is(err, context.Canceled) || fb.count("stat") != 1 {
			t.Fatalf("err %v after %d", err, fb.count("stat"))
		}
	})
}

func TestRetryLocal(t *testing.T) { testRetries(t, newTestLocal) }

// listFaultBucket fails a listing after delivering two keys, once.
type listFaultBucket struct {
	Bucket
	failed bool
}

func (l *listFaultBucket) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	n := 0
	return l.Bucket.List(ctx, prefix, func(oi ObjectInfo) error {
		if n == 2 && !l.failed {
			l.failed = true
			return io.ErrUnexpectedEOF
		}
		n++
		return fn(oi)
	})
}

func TestRetryListResumes(t *testing.T) {
	base := newTestLocal(t)
	for _, k := range []string{"a", "b", "c", "d"} {
		mustCreate(t, base, k, []byte(k), PutOptions{})
	}
	var got []string
	err := WithRetry(&listFaultBucket{Bucket: base}, fastPolicy(3)).List(context.Background(), "", func(oi ObjectInfo) error {
		got = append(got, oi.Key)
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[a b c d]" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errSlowDown, true},
		{minio.ErrorResponse{Code: "RequestTimeout", StatusCode: 400}, true},
		{minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{minio.ErrorResponse{StatusCode: 502}, true},
		{minio.ErrorResponse{StatusCode: 429}, true},
		{errAccessDenied, false},
		{minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, false},
		{minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, false},
		{minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, false},
		{minio.ErrorResponse{Code: "InvalidArgument", StatusCode: 400}, false},
		{fmt.Errorf("wrapped: %w", errSlowDown), true},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{&net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}, true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", ErrNotFound), false},
		{fmt.Errorf("x: %w", ErrExists), false},
		{fmt.Errorf("x: %w", ErrConflict), false},
		{fmt.Errorf("stored sha256: %w", ErrIntegrity), false},
		{&net.DNSError{Name: "nohost", IsNotFound: true}, false},
		{errors.New("something else"), false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{minio.ErrorResponse{Code: "InvalidAccessKeyId"}, "access key id is not known"},
		{minio.ErrorResponse{Code: "SignatureDoesNotMatch"}, "secret key is wrong"},
		{minio.ErrorResponse{Code: "NoSuchBucket", BucketName: "bk"}, "bucket bk does not exist"},
		{minio.ErrorResponse{Code: "AuthorizationHeaderMalformed", BucketName: "bk", Region: "eu-west-1"}, "set region to eu-west-1"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "connection refused"},
		{&net.DNSError{Name: "nohost.invalid", IsNotFound: true}, "cannot resolve nohost.invalid"},
		{fmt.Errorf("k: stored sha256: %w", ErrIntegrity), "failed verification"},
		{fmt.Errorf("put: %w", ErrConflict), "different content"},
		{errors.New("plain"), "plain"},
	} {
		if got := Explain(tc.err); !bytes.Contains([]byte(got), []byte(tc.want)) {
			t.Errorf("Explain(%v) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	base := newTestLocal(t)
	const rate = 256 << 10
	b := WithRateLimit(base, rate)
	data := randBytes(1, 256<<10)
	start := time.Now()
	// Two concurrent creates share the limit: 512 KiB at 256 KiB/s, less the
	// initial burst, takes well over a second.
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			if err := b.Create(context.Background(), fmt.Sprint("r", i), bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if el := time.Since(start); el < 1500*time.Millisecond || el > 5*time.Second {
		t.Errorf("took %v, want about 2s", el)
	}
	// Seekable and ReaderAt bodies stay so.
	var seen io.Reader
	spy := &spyBucket{Bucket: base, seen: &seen}
	_ = WithRateLimit(spy, rate).Create(context.Background(), "s", bytes.NewReader(data[:10]), 10, PutOptions{})
	if _, ok := seen.(io.ReadSeeker); !ok {
		t.Error("seekable body lost Seek")
	}
	if _, ok := seen.(io.ReaderAt); !ok {
		t.Error("ReaderAt body lost ReadAt")
	}
}

type spyBucket struct {
	Bucket
	seen *io.Reader
}

func (s *spyBucket) Create(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) error {
	*s.seen = r
	return s.Bucket.Create(ctx, key, r, size, opts)
}
