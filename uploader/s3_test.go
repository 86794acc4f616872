package uploader

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/segvault/segvault/internal/miniotest"
)

func newTestS3(t testing.TB, srv *miniotest.Server, bucket string, mod func(*S3Options)) *S3 {
	t.Helper()
	o := S3Options{
		Endpoint:  srv.URL(),
		Region:    "us-east-1",
		Bucket:    bucket,
		PathStyle: true,
		AccessKey: srv.AccessKey(),
		SecretKey: srv.SecretKey(),
		PartSize:  minPartSize,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := NewS3(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Contract(t *testing.T) {
	srv := miniotest.Start(t)
	testBucketContract(t, func(t *testing.T) Bucket {
		return newTestS3(t, srv, srv.NewBucket(t), nil)
	}, storeCaps{metadata: true})
}

// randBytes is incompressible test data.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		p[i] = byte(r.Uint32())
	}
	return p
}

func TestS3CreateOnlyMultipart(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	s := newTestS3(t, srv, srv.NewBucket(t), nil)
	big1 := randBytes(1, 2*minPartSize+123) // 3 parts
	big2 := randBytes(2, 2*minPartSize+123)
	small := []byte("small")

	t.Run("MultipartOverMultipart", func(t *testing.T) {
		mustCreate(t, s, "mm", big1, putOpts(big1))
		err := s.Create(ctx, "mm", bytes.NewReader(big2), int64(len(big2)), putOpts(big2))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
		if got, _ := mustGet(t, s, "mm"); !bytes.Equal(got, big1) {
			t.Fatal("object changed")
		}
	})
	t.Run("MultipartOverSingle", func(t *testing.T) {
		mustCreate(t, s, "ms", small, putOpts(small))
		err := s.Create(ctx, "ms", bytes.NewReader(big2), int64(len(big2)), putOpts(big2))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
		if got, _ := mustGet(t, s, "ms"); !bytes.Equal(got, small) {
			t.Fatal("object changed")
		}
	})
	t.Run("SingleOverMultipart", func(t *testing.T) {
		mustCreate(t, s, "sm", big1, putOpts(big1))
		err := s.Create(ctx, "sm", bytes.NewReader(small), int64(len(small)), putOpts(small))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
	})
	t.Run("NonReaderAtBody", func(t *testing.T) {
		// Sequential parts streamed from a plain reader.
		r := struct{ io.Reader }{bytes.NewReader(big1)}
		if err := s.Create(ctx, "seq", r, int64(len(big1)), putOpts(big1)); err != nil {
			t.Fatal(err)
		}
		if got, _ := mustGet(t, s, "seq"); !bytes.Equal(got, big1) {
			t.Fatal("content differs")
		}
	})
	t.Run("BodyNotAtStart", func(t *testing.T) {
		// Create reads from the reader's position, for ReadAt and retries too.
		for name, n := range map[string]int{"single": 1000, "multipart": len(big1) - 7} {
			r := bytes.NewReader(big1)
			if _, err := r.Seek(7, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			want := big1[7 : 7+n]
			if err := s.Create(ctx, "off-"+name, r, int64(n), putOpts(want)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got, _ := mustGet(t, s, "off-"+name); !bytes.Equal(got, want) {
				t.Fatalf("%s: content differs", name)
			}
		}
	})
	t.Run("CreatedDuringUpload", func(t *testing.T) {
		// The object appears between CreateMultipartUpload and
		// CompleteMultipartUpload: the completion must lose.
		gate := &gatedReader{r: bytes.NewReader(big1), after: minPartSize, release: make(chan struct{}), reached: make(chan struct{})}
		errc := make(chan error, 1)
		go func() {
			errc <- s.Create(ctx, "late", struct{ io.Reader }{gate}, int64(len(big1)), putOpts(big1))
		}()
		<-gate.reached
		mustCreate(t, s, "late", small, putOpts(small))
		close(gate.release)
		if err := <-errc; !errors.Is(err, ErrExists) {
			t.Fatalf("multipart completion: %v, want ErrExists", err)
		}
		if got, _ := mustGet(t, s, "late"); !bytes.Equal(got, small) {
			t.Fatal("the completed multipart upload replaced the object")
		}
		assertNoUploads(t, s)
	})
	t.Run("WrongCRCRejected", func(t *testing.T) {
		for name, data := range map[string][]byte{"single": small, "multipart": big1} {
			o := putOpts(data)
			o.CRC32C = "00000000"
			err := s.Create(ctx, "badcrc-"+name, bytes.NewReader(data), int64(len(data)), o)
			if err == nil {
				t.Fatalf("%s: server accepted a wrong CRC-32C", name)
			}
			if _, err := s.Stat(ctx, "badcrc-"+name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s: object exists after rejected create: %v", name, err)
			}
		}
		assertNoUploads(t, s)
	})
}

func assertNoUploads(t *testing.T, s *S3) {
	t.Helper()
	for u := range s.Client().ListIncompleteUploads(context.Background(), s.opts.Bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("incomplete upload left: %s %s", u.Key, u.UploadID)
	}
}

// gatedReader blocks once after `after` bytes until release is closed.
type gatedReader struct {
	r       io.Reader
	n       int
	after   int
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.n >= g.after {
		g.once.Do(func() { close(g.reached); <-g.release })
	}
	if rem := g.after - g.n; rem > 0 && len(p) > rem {
		p = p[:rem]
	}
	n, err := g.r.Read(p)
	g.n += n
	return n, err
}

func TestS3SSEAndRetention(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	data := randBytes(3, 3*minPartSize/2)
	for _, sse := range []string{"SSE-S3", "SSE-KMS"} {
		t.Run(sse, func(t *testing.T) {
			s := newTestS3(t, srv, srv.NewBucket(t), func(o *S3Options) {
				o.SSE = sse
				if sse == "SSE-KMS" {
					o.SSEKMSKeyID = miniotest.KMSKeyID
				}
			})
			mustCreate(t, s, "single", data[:1000], putOpts(data[:1000]))
			mustCreate(t, s, "multi", data, putOpts(data))
			for _, k := range []string{"single", "multi"} {
				oi, err := s.Client().StatObject(ctx, s.opts.Bucket, k, minio.StatObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if oi.Metadata.Get("X-Amz-Server-Side-Encryption") == "" {
					t.Errorf("%s: not encrypted at rest: %v", k, oi.Metadata)
				}
			}
			if got, _ := mustGet(t, s, "multi"); !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
		})
	}
	t.Run("Retention", func(t *testing.T) {
		s := newTestS3(t, srv, srv.NewObjectLockBucket(t), func(o *S3Options) {
			o.RetentionMode = "GOVERNANCE"
			o.RetentionDays = 2
		})
		mustCreate(t, s, "single", data[:1000], putOpts(data[:1000]))
		mustCreate(t, s, "multi", data, putOpts(data))
		for _, k := range []string{"single", "multi"} {
			mode, until, err := s.Client().GetObjectRetention(ctx, s.opts.Bucket, k, "")
			if err != nil {
				t.Fatal(err)
			}
			if mode == nil || *mode != minio.Governance || until == nil || until.Before(time.Now().Add(47*time.Hour)) {
				t.Errorf("%s: retention %v until %v", k, mode, until)
			}
		}
		// Create-only holds on a versioned (object-lock) bucket too.
		err := s.Create(ctx, "single", bytes.NewReader([]byte("x")), 1, putOpts([]byte("x")))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
	})
}

func TestS3TLS(t *testing.T) {
	srv := miniotest.StartWithOptions(t, miniotest.Options{TLS: true})
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	t.Run("UntrustedCA", func(t *testing.T) {
		s := newTestS3(t, srv, bucket, nil)
		err := Ping(ctx, s)
		if err == nil {
			t.Fatal("connected to a server with an untrusted certificate")
		}
		if IsTransient(err) {
			t.Errorf("TLS verification failure classed transient: %v", err)
		}
		if msg := Explain(err); !strings.Contains(msg, "TLS verification failed") {
			t.Errorf("Explain: %s", msg)
		}
	})
	t.Run("CAFile", func(t *testing.T) {
		s := newTestS3(t, srv, bucket, func(o *S3Options) { o.CAFile = srv.CAFile() })
		if err := Ping(ctx, s); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SSE-C", func(t *testing.T) {
		keyFile := t.TempDir() + "/ssec.key"
		writeFile(t, keyFile, []byte(strings.Repeat("ab", 32)+"\n"))
		s := newTestS3(t, srv, srv.NewBucket(t), func(o *S3Options) {
			o.CAFile = srv.CAFile()
			o.SSE = "SSE-C"
			o.SSECKeyFile = keyFile
		})
		data := randBytes(4, 2*minPartSize+5)
		mustCreate(t, s, "single", data[:100], putOpts(data[:100]))
		mustCreate(t, s, "multi", data, putOpts(data))
		if got, _ := mustGet(t, s, "multi"); !bytes.Equal(got, data) {
			t.Fatal("content differs")
		}
		st, err := s.Stat(ctx, "single")
		if err != nil || st.Metadata[MetaSHA256] != sha256Hex(data[:100]) {
			t.Fatalf("stat: %+v %v", st, err)
		}
		// Without the key the object cannot be read.
		plain := newTestS3(t, srv, s.opts.Bucket, func(o *S3Options) { o.CAFile = srv.CAFile() })
		if _, _, err := plain.Get(ctx, "single"); err == nil {
			t.Fatal("read an SSE-C object without its key")
		}
	})
}

func TestS3Errors(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	cases := []struct {
		name    string
		mod     func(*S3Options)
		explain string
	}{
		{"BadAccessKey", func(o *S3Options) { o.AccessKey = "nobody" }, "access key id is not known"},
		{"BadSecret", func(o *S3Options) { o.SecretKey = "wrong-secret" }, "secret key is wrong"},
		{"NoSuchBucket", func(o *S3Options) { o.Bucket = "no-such-bucket" }, "does not exist"},
		{"ConnectionRefused", func(o *S3Options) { o.Endpoint = "http://127.0.0.1:1" }, "connection refused"},
		{"PlainHTTPAsTLS", func(o *S3Options) { o.Endpoint = strings.TrimPrefix(srv.URL(), "http://") }, "does not speak TLS"},
		{"WrongRegion", func(o *S3Options) { o.Region = "eu-west-1" }, "set region to us-east-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestS3(t, srv, bucket, func(o *S3Options) { tc.mod(o); o.RequestRetries = 1 })
			err := Ping(ctx, s)
			if err == nil {
				err = s.Create(ctx, "k", bytes.NewReader([]byte("x")), 1, PutOptions{})
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("%v → %s", err, Explain(err))
			if msg := Explain(err); !strings.Contains(msg, tc.explain) {
				t.Errorf("Explain(%v) = %q, want %q", err, msg, tc.explain)
			}
			if tc.name != "ConnectionRefused" && IsTransient(err) {
				t.Errorf("permanent failure classed transient: %v", err)
			}
		})
	}
}

// TestS3EnvCredentials: without static keys the chain reads AWS_* from the
// environment.
func TestS3EnvCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey())
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey())
	s := newTestS3(t, srv, srv.NewBucket(t), func(o *S3Options) { o.AccessKey, o.SecretKey = "", "" })
	if err := Ping(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "k", []byte("x"), PutOptions{})
}

// TestS3Outage: uploads through WithRetry ride out a server restart.
func TestS3Outage(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	s := newTestS3(t, srv, srv.NewBucket(t), func(o *S3Options) { o.RequestRetries = 1 })
	var retries int
	var mu sync.Mutex
	b := WithRetry(s, RetryPolicy{MaxAttempts: 40, BaseDelay: 100 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
		OnRetry: func(op, key string, attempt int, err error, d time.Duration) {
			mu.Lock()
			retries++
			mu.Unlock()
		}})
	srv.Stop()
	done := make(chan error, 1)
	data := randBytes(5, 1000)
	go func() { done <- CreateVerified(ctx, b, "k", bytes.NewReader(data), int64(len(data)), putOpts(data)) }()
	time.Sleep(700 * time.Millisecond)
	srv.Restart()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if retries == 0 {
		t.Fatal("no retries during the outage")
	}
	if got, _ := mustGet(t, b, "k"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

// TestS3Retries runs the retry checks over a real MinIO store.
func TestS3Retries(t *testing.T) {
	srv := miniotest.Start(t)
	testRetries(t, func(t *testing.T) Bucket { return newTestS3(t, srv, srv.NewBucket(t), nil) })
}
