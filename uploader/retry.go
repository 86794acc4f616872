package uploader

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// RetryPolicy configures WithRetry.
type RetryPolicy struct {
	// MaxAttempts is the number of tries of one operation, the first
	// included (default 5).
	MaxAttempts int
	// BaseDelay is the delay before the first retry (default 250ms); it
	// doubles with every retry, up to MaxDelay (default 20s). Each delay is
	// drawn uniformly from [d/2, d] (jitter).
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// OnRetry, if set, is called before each retry (logs, metrics).
	OnRetry func(op, key string, attempt int, err error, delay time.Duration)

	sleep func(ctx context.Context, d time.Duration) error // tests
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 250 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 20 * time.Second
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	return p
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// WithRetry retries b's operations that fail with a transient error
// (IsTransient) with exponential backoff and jitter; permanent errors and
// the caller's cancellation return at once.
//
// Create is retried only when its reader is an io.Seeker (PutFile's staged
// body is): each attempt starts from the reader's position at the call. A
// Create whose earlier attempt did succeed then fails with ErrExists, which
// CreateVerified and PutFile resolve by comparing content. Get retries
// opening the object, not reads of the returned body (OpenVerified's caller
// re-opens). A retried List resumes after the last key it delivered.
func WithRetry(b Bucket, p RetryPolicy) Bucket {
	return &retryBucket{b: b, p: p.withDefaults()}
}

type retryBucket struct {
	b Bucket
	p RetryPolicy
}

func (r *retryBucket) String() string { return r.b.String() }

func (r *retryBucket) do(ctx context.Context, op, key string, fn func() error) error {
	delay := r.p.BaseDelay
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt >= r.p.MaxAttempts || ctx.Err() != nil || !IsTransient(err) {
			if err != nil && attempt > 1 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		d := delay/2 + rand.N(delay/2+1)
		if r.p.OnRetry != nil {
			r.p.OnRetry(op, key, attempt, err, d)
		}
		if serr := r.p.sleep(ctx, d); serr != nil {
			return errors.Join(err, serr)
		}
		delay = min(2*delay, r.p.MaxDelay)
	}
}

func (r *retryBucket) Get(ctx context.Context, key string) (rc io.ReadCloser, info ObjectInfo, err error) {
	err = r.do(ctx, "get", key, func() error {
		var err error
		rc, info, err = r.b.Get(ctx, key)
		return err
	})
	return rc, info, err
}

func (r *retryBucket) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = r.do(ctx, "stat", key, func() error {
		var err error
		info, err = r.b.Stat(ctx, key)
		return err
	})
	return info, err
}

func (r *retryBucket) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	last, delivered := "", false
	var fnErr error
	return r.do(ctx, "list", prefix, func() error {
		err := r.b.List(ctx, prefix, func(oi ObjectInfo) error {
			if delivered && oi.Key <= last {
				return nil // seen before this attempt
			}
			if err := fn(oi); err != nil {
				fnErr = err
				return err
			}
			last, delivered = oi.Key, true
			return nil
		})
		if fnErr != nil {
			return permanent{fnErr} // the callback's error is never retried
		}
		return err
	})
}

// permanent stops retries of an error that happens to look transient.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

func (r *retryBucket) Create(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	rs, ok := body.(io.ReadSeeker)
	if !ok {
		return r.b.Create(ctx, key, body, size, opts)
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return r.b.Create(ctx, key, body, size, opts)
	}
	first := true
	return r.do(ctx, "create", key, func() error {
		if !first {
			if _, err := rs.Seek(start, io.SeekStart); err != nil {
				return permanent{fmt.Errorf("create %s: rewind for retry: %w", key, err)}
			}
		}
		first = false
		return r.b.Create(ctx, key, body, size, opts)
	})
}

func (r *retryBucket) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func() error { return r.b.Delete(ctx, key) })
}

// Transient S3 error codes: worth retrying as they are.
var transientCodes = map[string]bool{
	"SlowDown":                   true,
	"RequestTimeout":             true,
	"InternalError":              true,
	"ServiceUnavailable":         true,
	"RequestThrottled":           true,
	"Throttling":                 true,
	"ThrottlingException":        true,
	"TooManyRequests":            true,
	"ConditionalRequestConflict": true, // racing conditional writes (AWS): retry gets 412 or succeeds
	"OperationAborted":           true,
	"XMinioServerNotInitialized": true,
	"XMinioReadQuorum":           true,
	"XMinioWriteQuorum":          true,
	"ExpiredToken":               true, // the credential chain refreshes it
}

// IsTransient reports whether err is worth retrying: timeouts, connection
// resets and refusals, a body cut short, HTTP 5xx, 408, 429 and throttling
// codes. Store answers (ErrNotFound, ErrExists, ErrConflict), corruption
// (ErrIntegrity), authentication and authorisation failures, unknown buckets,
// TLS verification failures and other 4xx are permanent.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var p permanent
	if errors.As(err, &p) {
		return false
	}
	for _, s := range []error{ErrNotFound, ErrExists, ErrConflict, ErrIntegrity, ErrUnknownKey, context.Canceled} {
		if errors.Is(err, s) {
			return false
		}
	}
	if er, ok := s3Error(err); ok {
		if transientCodes[er.Code] {
			return true
		}
		if er.StatusCode != 0 {
			return er.StatusCode >= 500 || er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests
		}
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var cve *tls.CertificateVerificationError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) || errors.As(err, &cve) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN} {
		if errors.Is(err, e) {
			return true
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection reset", "broken pipe", "server closed idle connection", "is offline", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// s3Error finds a minio-go error response in err's chain.
func s3Error(err error) (minio.ErrorResponse, bool) {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er, er.Code != "" || er.StatusCode != 0
	}
	var erp *minio.ErrorResponse
	if errors.As(err, &erp) && erp != nil {
		return *erp, erp.Code != "" || erp.StatusCode != 0
	}
	return minio.ErrorResponse{}, false
}

// CreateStream retries starting the upload and then each part, Complete and
// Abort on their own (a part's bytes are in memory, so a retry resends
// them); a failed part never restarts the whole stream. A Complete whose
// earlier attempt did succeed fails with ErrExists: the caller compares.
func (r *retryBucket) CreateStream(ctx context.Context, key string, opts PutOptions) (ObjectStream, error) {
	var st ObjectStream
	err := r.do(ctx, "create", key, func() error {
		var err error
		st, err = CreateStream(ctx, r.b, key, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &retryStream{r: r, key: key, st: st}, nil
}

type retryStream struct {
	r   *retryBucket
	key string
	st  ObjectStream
}

func (s *retryStream) WritePart(ctx context.Context, n int, data []byte, crc32c string) error {
	return s.r.do(ctx, "put part", s.key, func() error { return s.st.WritePart(ctx, n, data, crc32c) })
}

func (s *retryStream) Complete(ctx context.Context) error {
	return s.r.do(ctx, "complete", s.key, func() error { return s.st.Complete(ctx) })
}

func (s *retryStream) Abort(ctx context.Context) error {
	return s.r.do(ctx, "abort", s.key, func() error { return s.st.Abort(ctx) })
}

// GetRange retries opening the range, like Get.
func (r *retryBucket) GetRange(ctx context.Context, key string, off, n int64) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "get", key, func() error {
		var err error
		rc, err = GetRange(ctx, r.b, key, off, n)
		return err
	})
	return rc, err
}
