package uploader

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"
	"golang.org/x/sync/errgroup"
)

// S3Options configure an S3 store. The object prefix is not here: keys come
// from a Layout, which carries it.
type S3Options struct {
	// Endpoint is host[:port], or a URL http://host[:port] / https://host[:port].
	// A bare host uses TLS unless DisableTLS. Empty means s3.amazonaws.com.
	Endpoint string
	Region   string
	Bucket   string

	// DisableTLS talks plain HTTP to a bare-host endpoint.
	DisableTLS bool
	// CAFile adds PEM CA certificates to the system pool for server verification.
	CAFile string
	// InsecureSkipVerify disables server certificate verification. Never in production.
	InsecureSkipVerify bool
	// PathStyle forces path-style requests (https://host/bucket/key), as most
	// non-AWS servers need; otherwise minio-go picks (virtual-host for AWS).
	PathStyle bool

	// AccessKey/SecretKey/SessionToken are static credentials. When empty,
	// minio-go's chain is used: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/
	// AWS_SESSION_TOKEN), MINIO_ACCESS_KEY/MINIO_SECRET_KEY (or MINIO_ROOT_*),
	// the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
	// ~/.aws/credentials, profile AWS_PROFILE), then the IAM role: web
	// identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), ECS container
	// credentials, EC2 instance metadata.
	AccessKey    string
	SecretKey    string
	SessionToken string

	// StorageClass is sent with every object (e.g. STANDARD_IA); "" = bucket default.
	StorageClass string

	// SSE: "" (none), "SSE-S3", "SSE-KMS" (with SSEKMSKeyID, "" = the
	// bucket's default KMS key) or "SSE-C" (with SSECKeyFile, a 32-byte key
	// read like client-side keys; needs TLS).
	SSE         string
	SSEKMSKeyID string
	SSECKeyFile string

	// RetentionMode ("GOVERNANCE" or "COMPLIANCE") and RetentionDays lock
	// every created object for that many days (the bucket needs object lock).
	RetentionMode string
	RetentionDays int

	// PartSize is the multipart part size, and objects up to it are sent in
	// one PUT. Default 16 MiB, minimum 5 MiB.
	PartSize int64
	// PartConcurrency is how many parts of one object are uploaded at once
	// (default 2).
	PartConcurrency int
	// RequestRetries is minio-go's per-request retry count (default 3, 1 =
	// none). Retries of whole operations belong to WithRetry.
	RequestRetries int
	// StallTimeout fails a request whose connection moves no byte either
	// way for that long (a server that accepts and never answers, a network
	// that drops packets silently): without it a PUT whose body the peer
	// stops reading blocks for ever. Default 2 minutes; it bounds silence,
	// not the duration of a transfer that progresses.
	StallTimeout time.Duration
	// Transport replaces the HTTP transport (tests); TLS options are then ignored.
	Transport http.RoundTripper
}

const (
	defaultStallTimeout = 2 * time.Minute
	defaultPartSize     = 16 << 20
	minPartSize         = 5 << 20
	maxParts            = 10000
)

// Validate checks the options, naming the offending one. An empty Bucket is
// allowed here (Open fills it from the URL); NewS3 requires it.
func (o *S3Options) Validate() error {
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return errors.New("s3: access key and secret key must be set together")
	}
	switch strings.ToUpper(o.SSE) {
	case "", "SSE-S3", "SSE-KMS":
	case "SSE-C":
		if o.SSECKeyFile == "" {
			return errors.New("s3: sse SSE-C needs sse_c_key_file")
		}
	default:
		return fmt.Errorf("s3: sse %q: want SSE-S3, SSE-KMS or SSE-C", o.SSE)
	}
	switch strings.ToUpper(o.RetentionMode) {
	case "":
		if o.RetentionDays != 0 {
			return errors.New("s3: retention_days needs retention_mode")
		}
	case "GOVERNANCE", "COMPLIANCE":
		if o.RetentionDays <= 0 {
			return fmt.Errorf("s3: retention_mode %s needs retention_days > 0", o.RetentionMode)
		}
	default:
		return fmt.Errorf("s3: retention_mode %q: want GOVERNANCE or COMPLIANCE", o.RetentionMode)
	}
	if o.PartSize != 0 && (o.PartSize < minPartSize || o.PartSize > 5<<30) {
		return fmt.Errorf("s3: part_size %d outside 5 MiB..5 GiB", o.PartSize)
	}
	if o.PartConcurrency < 0 || o.RequestRetries < 0 {
		return errors.New("s3: part_concurrency and request_retries must not be negative")
	}
	return nil
}

// S3 is a store in an S3-compatible bucket, through minio-go.
//
// Create is create-only with If-None-Match: * on the single PUT, and for
// multipart uploads on both CreateMultipartUpload and
// CompleteMultipartUpload (the completion is where the object appears, so a
// concurrent creator between the two still loses). minio-go's
// Client.PutObject drops custom headers from the completion request, so
// multipart uploads are driven through minio.Core here. A 412 Precondition
// Failed becomes ErrExists. Objects up to PartSize go in one PUT, larger
// ones in PartSize parts, in parallel when the body is an io.ReaderAt
// (PutFile's staged body is), otherwise streamed part by part with no
// buffering. Every object carries the CRC-32C additional checksum
// (FULL_OBJECT type), which the server verifies: on a single PUT the value
// from PutOptions.CRC32C is sent as a header; on multipart uploads each part
// carries a trailing CRC-32C and the completion the full-object value from
// PutOptions.CRC32C, so the server proves the assembled object is the bytes
// the caller hashed.
type S3 struct {
	opts     S3Options
	client   *minio.Client
	core     minio.Core
	sse      encrypt.ServerSide
	partSize int64
	conc     int
	desc     string
}

var _ Bucket = (*S3)(nil)

// NewS3 builds an S3 store. It does not contact the server; use Ping.
func NewS3(opts S3Options) (*S3, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Bucket == "" {
		return nil, errors.New("s3: bucket is required")
	}
	host, secure, err := parseEndpoint(opts.Endpoint, opts.DisableTLS)
	if err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if opts.AccessKey != "" {
		creds = credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.EnvMinio{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	tr := opts.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("s3: transport: %w", err)
		}
		stall := opts.StallTimeout
		if stall <= 0 {
			stall = defaultStallTimeout
		}
		dial := (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &stallConn{Conn: c, timeout: stall}, nil
		}
		if secure {
			tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.InsecureSkipVerify} //nolint:gosec // opt-in, documented
			if opts.CAFile != "" {
				pem, err := os.ReadFile(opts.CAFile)
				if err != nil {
					return nil, fmt.Errorf("s3: --s3-ca-file: %w", err)
				}
				pool, err := x509.SystemCertPool()
				if err != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("s3: --s3-ca-file %s: no PEM certificates", opts.CAFile)
				}
				tc.RootCAs = pool
			}
			t.TLSClientConfig = tc
		}
		tr = t
	}
	retries := opts.RequestRetries
	if retries == 0 {
		retries = 3
	}
	lookup := minio.BucketLookupAuto
	if opts.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds:           creds,
		Secure:          secure,
		Transport:       tr,
		Region:          opts.Region,
		BucketLookup:    lookup,
		TrailingHeaders: true,
		MaxRetries:      retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &S3{opts: opts, client: client, core: minio.Core{Client: client}, partSize: opts.PartSize, conc: opts.PartConcurrency}
	if s.partSize == 0 {
		s.partSize = defaultPartSize
	}
	if s.conc == 0 {
		s.conc = 2
	}
	switch strings.ToUpper(opts.SSE) {
	case "SSE-S3":
		s.sse = encrypt.NewSSE()
	case "SSE-KMS":
		s.sse, err = encrypt.NewSSEKMS(opts.SSEKMSKeyID, nil)
		if err != nil {
			return nil, fmt.Errorf("s3: sse-kms: %w", err)
		}
	case "SSE-C":
		if !secure {
			return nil, errors.New("s3: SSE-C needs TLS (the key travels in headers)")
		}
		k, err := LoadKeyMaterial(opts.SSECKeyFile)
		if err != nil {
			return nil, fmt.Errorf("s3: sse_c_key_file: %w", err)
		}
		s.sse, err = encrypt.NewSSEC(k[:])
		if err != nil {
			return nil, fmt.Errorf("s3: sse-c: %w", err)
		}
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	s.desc = fmt.Sprintf("s3://%s at %s://%s", opts.Bucket, scheme, host)
	return s, nil
}

func parseEndpoint(ep string, disableTLS bool) (host string, secure bool, err error) {
	if ep == "" {
		return "s3.amazonaws.com", !disableTLS, nil
	}
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", false, fmt.Errorf("s3: endpoint %q: %w", ep, err)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return "", false, fmt.Errorf("s3: endpoint %q: want scheme://host[:port] without path, query or credentials", ep)
		}
		switch u.Scheme {
		case "https":
			return u.Host, true, nil
		case "http":
			return u.Host, false, nil
		default:
			return "", false, fmt.Errorf("s3: endpoint %q: scheme must be http or https", ep)
		}
	}
	if strings.ContainsAny(ep, "/?#@") {
		return "", false, fmt.Errorf("s3: endpoint %q: want host[:port]", ep)
	}
	return ep, !disableTLS, nil
}

func (s *S3) String() string { return s.desc }

// BucketName is the bucket the store writes to.
func (s *S3) BucketName() string { return s.opts.Bucket }

// Client is the underlying minio-go client (for tests and tools).
func (s *S3) Client() *minio.Client { return s.client }

func (s *S3) getOpts() minio.GetObjectOptions {
	var o minio.GetObjectOptions
	if s.sse != nil && s.sse.Type() == encrypt.SSEC {
		o.ServerSideEncryption = s.sse
	}
	return o
}

// Get implements BucketReader.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	body, oi, _, err := s.core.GetObject(ctx, s.opts.Bucket, key, s.getOpts())
	if err != nil {
		return nil, ObjectInfo{}, s.mapErr("get", key, err)
	}
	return body, toObjectInfo(key, oi), nil
}

// Stat implements BucketReader.
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	oi, err := s.client.StatObject(ctx, s.opts.Bucket, key, s.getOpts())
	if err != nil {
		return ObjectInfo{}, s.mapErr("stat", key, err)
	}
	return toObjectInfo(key, oi), nil
}

func toObjectInfo(key string, oi minio.ObjectInfo) ObjectInfo {
	info := ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified, ETag: oi.ETag}
	if len(oi.UserMetadata) > 0 {
		info.Metadata = make(map[string]string, len(oi.UserMetadata))
		for k, v := range oi.UserMetadata {
			info.Metadata[strings.ToLower(k)] = v
		}
	}
	return info
}

// List implements BucketReader. ObjectInfo.Metadata is not filled.
func (s *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine when fn returns early
	for oi := range s.client.ListObjectsIter(ctx, s.opts.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return s.mapErr("list", prefix, oi.Err)
		}
		if err := fn(ObjectInfo{Key: oi.Key, Size: oi.Size, ModTime: oi.LastModified, ETag: oi.ETag}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete implements BucketWriter.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.opts.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		err = s.mapErr("delete", key, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// mapErr turns S3 error codes callers branch on into sentinels.
func (s *S3) mapErr(op, key string, err error) error {
	resp, _ := s3Error(err)
	switch resp.Code {
	case "NoSuchKey", "NoSuchVersion":
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	case "PreconditionFailed":
		return fmt.Errorf("%s %s: %w", op, key, ErrExists)
	}
	if resp.Code == "" && resp.StatusCode == http.StatusNotFound && op == "stat" {
		// HEAD has no body: a 404 without a code is a missing key unless the
		// bucket is missing, which minio-go reports as NoSuchBucket.
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

func (s *S3) putOptions(opts PutOptions) minio.PutObjectOptions {
	md := make(map[string]string, len(opts.Metadata)+2)
	for k, v := range opts.Metadata {
		md[strings.ToLower(k)] = v
	}
	if opts.SHA256 != "" {
		md[MetaSHA256] = opts.SHA256
	}
	if opts.CRC32C != "" {
		md[MetaCRC32C] = opts.CRC32C
	}
	po := minio.PutObjectOptions{
		UserMetadata:         md,
		ContentType:          opts.ContentType,
		StorageClass:         s.opts.StorageClass,
		ServerSideEncryption: s.sse,
		// Integrity comes from the CRC-32C checksum, and TLS authenticates
		// the channel: signing the payload's SHA-256 would hash it twice more.
		DisableContentSha256: true,
	}
	if s.opts.RetentionMode != "" {
		po.Mode = minio.RetentionMode(strings.ToUpper(s.opts.RetentionMode))
		po.RetainUntilDate = time.Now().Add(time.Duration(s.opts.RetentionDays) * 24 * time.Hour).UTC()
	}
	po.SetMatchETagExcept("*")
	return po
}

// crcBase64 converts a hex CRC-32C to the base64 big-endian form S3 uses.
func crcBase64(hexCRC string) (string, error) {
	b, err := hex.DecodeString(hexCRC)
	if err != nil || len(b) != 4 {
		return "", fmt.Errorf("bad crc32c %q", hexCRC)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

const (
	hdrChecksumCRC32C = "x-amz-checksum-crc32c"
	hdrChecksumAlgo   = "x-amz-checksum-algorithm"
	hdrChecksumType   = "x-amz-checksum-type"
)

// Create implements BucketWriter.
func (s *S3) Create(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) error {
	if size < 0 {
		return fmt.Errorf("create %s: size must be known", key)
	}
	var crcB64 string
	if opts.CRC32C != "" {
		var err error
		if crcB64, err = crcBase64(opts.CRC32C); err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
	}
	po := s.putOptions(opts)
	var err error
	if size <= s.partSize {
		if crcB64 != "" {
			po.UserMetadata[hdrChecksumCRC32C] = crcB64 // minio-go then adds no checksum of its own
		}
		// Without a value minio-go sends a trailing CRC-32C it computes.
		var body io.Reader
		if body, err = bodyReader(r, size); err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
		_, err = s.core.PutObject(ctx, s.opts.Bucket, key, body, size, "", "", po)
	} else {
		err = s.multipart(ctx, key, r, size, po, crcB64)
	}
	if err != nil {
		return s.mapErr("create", key, err)
	}
	return nil
}

func (s *S3) multipart(ctx context.Context, key string, r io.Reader, size int64, po minio.PutObjectOptions, crcB64 string) (err error) {
	partSize := s.partSize
	if n := (size + partSize - 1) / partSize; n > maxParts {
		partSize = (size + maxParts - 1) / maxParts
		partSize = (partSize + minPartSize - 1) / minPartSize * minPartSize
	}
	nParts := int((size + partSize - 1) / partSize)

	po.UserMetadata[hdrChecksumAlgo] = "CRC32C"
	po.UserMetadata[hdrChecksumType] = "FULL_OBJECT"
	uploadID, err := s.core.NewMultipartUpload(ctx, s.opts.Bucket, key, po)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = s.core.AbortMultipartUpload(actx, s.opts.Bucket, key, uploadID)
		}
	}()

	parts := make([]minio.CompletePart, nParts)
	upload := func(ctx context.Context, i int, body io.Reader, n int64) error {
		trailer := http.Header{}
		trailer.Set(hdrChecksumCRC32C, base64.StdEncoding.EncodeToString(make([]byte, 4)))
		cr := newCRCTrailer(body, trailer)
		var sse encrypt.ServerSide
		if s.sse != nil && s.sse.Type() == encrypt.SSEC {
			sse = s.sse
		}
		p, err := s.core.PutObjectPart(ctx, s.opts.Bucket, key, uploadID, i+1, cr, n,
			minio.PutObjectPartOptions{SSE: sse, Trailer: trailer, DisableContentSha256: true})
		if err != nil {
			return fmt.Errorf("part %d: %w", i+1, err)
		}
		parts[i] = minio.CompletePart{PartNumber: i + 1, ETag: p.ETag, ChecksumCRC32C: p.ChecksumCRC32C}
		return nil
	}
	if ra, ok := r.(io.ReaderAt); ok {
		var base int64 // ReadAt offsets are absolute; Create reads from r's position
		if sk, ok := r.(io.Seeker); ok {
			if base, err = sk.Seek(0, io.SeekCurrent); err != nil {
				return err
			}
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.conc)
		for i := 0; i < nParts; i++ {
			off := base + int64(i)*partSize
			n := min(partSize, size-int64(i)*partSize)
			g.Go(func() error { return upload(gctx, i, io.NewSectionReader(ra, off, n), n) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	} else {
		// Sequential parts streamed straight from r: no part buffers.
		for i := 0; i < nParts; i++ {
			off := int64(i) * partSize
			n := min(partSize, size-off)
			lr := &io.LimitedReader{R: r, N: n}
			if err := upload(ctx, i, lr, n); err != nil {
				return err
			}
			if lr.N != 0 {
				return fmt.Errorf("part %d: %w", i+1, io.ErrUnexpectedEOF)
			}
		}
	}

	// The completion carries If-None-Match (where the object appears) and the
	// full-object CRC-32C, but not the object-lock headers (MinIO rejects them
	// there; they were given at initiation).
	copts := minio.PutObjectOptions{ServerSideEncryption: po.ServerSideEncryption, UserMetadata: map[string]string{hdrChecksumType: "FULL_OBJECT"}}
	if crcB64 != "" {
		copts.UserMetadata[hdrChecksumCRC32C] = crcB64
	}
	copts.SetMatchETagExcept("*")
	_, err = s.core.CompleteMultipartUpload(ctx, s.opts.Bucket, key, uploadID, parts, copts)
	return err
}

// crcTrailerReader computes the CRC-32C of a part while minio-go sends it and
// sets the trailing checksum header at EOF.
type crcTrailerReader struct {
	r       io.Reader
	c       uint32
	trailer http.Header
}

func (c *crcTrailerReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.c = crc32.Update(c.c, castagnoli, p[:n])
	if err == io.EOF {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], c.c)
		c.trailer.Set(hdrChecksumCRC32C, base64.StdEncoding.EncodeToString(b[:]))
	}
	return n, err
}

// crcTrailerSeeker lets minio-go rewind a part for its request retries.
type crcTrailerSeeker struct {
	crcTrailerReader
	s io.Seeker
}

func (c *crcTrailerSeeker) Seek(off int64, whence int) (int64, error) {
	pos, err := c.s.Seek(off, whence)
	if err == nil && pos == 0 {
		c.c = 0
	}
	return pos, err
}

func newCRCTrailer(r io.Reader, trailer http.Header) io.Reader {
	cr := crcTrailerReader{r: r, trailer: trailer}
	if sk, ok := r.(io.Seeker); ok {
		return &crcTrailerSeeker{crcTrailerReader: cr, s: sk}
	}
	return &cr
}

// bodyReader gives minio-go exactly size bytes of r from its current
// position, hides Close (minio-go closes a body that has one, but the caller
// owns r) and, when r can seek, makes "seek to 0" mean "back to where r was
// when Create began", so request retries resend the right bytes.
func bodyReader(r io.Reader, size int64) (io.Reader, error) {
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		return io.LimitReader(r, size), nil
	}
	base, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	return &sectionSeeker{rs: rs, base: base, size: size}, nil
}

// sectionSeeker is the section [base, base+size) of a ReadSeeker.
type sectionSeeker struct {
	rs   io.ReadSeeker
	base int64
	size int64
	pos  int64
}

func (o *sectionSeeker) Read(p []byte) (int, error) {
	if o.pos >= o.size {
		return 0, io.EOF
	}
	if rem := o.size - o.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := o.rs.Read(p)
	o.pos += int64(n)
	return n, err
}

func (o *sectionSeeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += o.pos
	case io.SeekEnd:
		off += o.size
	}
	if off < 0 {
		return 0, errors.New("seek before start")
	}
	if _, err := o.rs.Seek(o.base+off, io.SeekStart); err != nil {
		return 0, err
	}
	o.pos = off
	return off, nil
}

// Ping checks that the store is reachable, the credentials valid and the
// bucket present, by asking for an object that does not exist.
func Ping(ctx context.Context, b BucketReader) error {
	_, err := b.Stat(ctx, ".segvault-ping")
	if err == nil || errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// stallConn moves its deadline forward before every read and write, so a
// connection fails only after timeout without any progress.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}

var (
	_ StreamCreator = (*S3)(nil)
	_ RangeGetter   = (*S3)(nil)
)

// CreateStream implements StreamCreator with a multipart upload: every
// WritePart is one UploadPart carrying the part's CRC-32C
// (x-amz-checksum-crc32c), which the server verifies; Complete is
// create-only (If-None-Match: *) and Abort (or a failed Complete) removes
// the parts, so no partial object is ever visible.
func (s *S3) CreateStream(ctx context.Context, key string, opts PutOptions) (ObjectStream, error) {
	po := s.putOptions(opts)
	po.UserMetadata[hdrChecksumAlgo] = "CRC32C"
	uploadID, err := s.core.NewMultipartUpload(ctx, s.opts.Bucket, key, po)
	if err != nil {
		return nil, s.mapErr("create", key, err)
	}
	return &s3Stream{s: s, key: key, uploadID: uploadID, sse: po.ServerSideEncryption, parts: map[int]minio.CompletePart{}}, nil
}

type s3Stream struct {
	s        *S3
	key      string
	uploadID string
	sse      encrypt.ServerSide
	mu       sync.Mutex
	parts    map[int]minio.CompletePart
	done     bool
}

func (st *s3Stream) WritePart(ctx context.Context, n int, data []byte, crc32c string) error {
	if n < 1 || n > maxParts {
		return fmt.Errorf("create %s: part %d out of range 1..%d", st.key, n, maxParts)
	}
	st.mu.Lock()
	done := st.done
	st.mu.Unlock()
	if done {
		return fmt.Errorf("create %s: part %d after Complete or Abort", st.key, n)
	}
	crcB64, err := crcBase64(crc32c)
	if err != nil {
		return fmt.Errorf("create %s: part %d: %w", st.key, n, err)
	}
	hdr := http.Header{}
	hdr.Set(hdrChecksumCRC32C, crcB64)
	var sse encrypt.ServerSide
	if st.sse != nil && st.sse.Type() == encrypt.SSEC {
		sse = st.sse
	}
	p, err := st.s.core.PutObjectPart(ctx, st.s.opts.Bucket, st.key, st.uploadID, n, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectPartOptions{SSE: sse, CustomHeader: hdr, DisableContentSha256: true})
	if err != nil {
		return fmt.Errorf("create %s: part %d: %w", st.key, n, st.s.mapErr("put part", st.key, err))
	}
	cs := p.ChecksumCRC32C
	if cs == "" {
		cs = crcB64
	}
	st.mu.Lock()
	st.parts[n] = minio.CompletePart{PartNumber: n, ETag: p.ETag, ChecksumCRC32C: cs}
	st.mu.Unlock()
	return nil
}

func (st *s3Stream) Complete(ctx context.Context) (err error) {
	st.mu.Lock()
	if st.done {
		st.mu.Unlock()
		return fmt.Errorf("create %s: Complete after Complete or Abort", st.key)
	}
	parts := make([]minio.CompletePart, 0, len(st.parts))
	for i := 1; i <= len(st.parts); i++ {
		p, ok := st.parts[i]
		if !ok {
			st.mu.Unlock()
			return fmt.Errorf("create %s: part %d missing", st.key, i)
		}
		parts = append(parts, p)
	}
	st.mu.Unlock()
	if len(parts) == 0 {
		return fmt.Errorf("create %s: no parts", st.key)
	}
	copts := minio.PutObjectOptions{ServerSideEncryption: st.sse}
	copts.SetMatchETagExcept("*")
	_, err = st.s.core.CompleteMultipartUpload(ctx, st.s.opts.Bucket, st.key, st.uploadID, parts, copts)
	if err != nil {
		err = st.s.mapErr("create", st.key, err)
		if errors.Is(err, ErrExists) {
			// The object at key is someone else's (or an earlier attempt's):
			// this upload's parts go.
			_ = st.Abort(ctx)
		}
		return err
	}
	st.mu.Lock()
	st.done = true
	st.mu.Unlock()
	return nil
}

func (st *s3Stream) Abort(ctx context.Context) error {
	st.mu.Lock()
	if st.done {
		st.mu.Unlock()
		return nil
	}
	st.done = true
	st.mu.Unlock()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := st.s.core.AbortMultipartUpload(actx, st.s.opts.Bucket, st.key, st.uploadID); err != nil {
		if resp, _ := s3Error(err); resp.Code == "NoSuchUpload" {
			return nil
		}
		return st.s.mapErr("abort", st.key, err)
	}
	return nil
}

// GetRange implements RangeGetter with a Range request. A range that is
// not wholly inside the object is an error (the server would shorten it).
func (s *S3) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("get %s: bad range %d+%d", key, off, n)
	}
	if n == 0 {
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, fmt.Errorf("get %s: range %d+0, object has %d bytes: %w", key, off, info.Size, ErrRangeEnd)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	o := s.getOpts()
	if err := o.SetRange(off, off+n-1); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	body, oi, _, err := s.core.GetObject(ctx, s.opts.Bucket, key, o)
	if err != nil {
		if resp, _ := s3Error(err); resp.Code == "InvalidRange" {
			return nil, fmt.Errorf("get %s: range %d+%d: %w", key, off, n, ErrRangeEnd)
		}
		return nil, s.mapErr("get", key, err)
	}
	if oi.Size != n {
		body.Close()
		return nil, fmt.Errorf("get %s: range %d+%d, server returned %d bytes: %w", key, off, n, oi.Size, ErrRangeEnd)
	}
	return &exactReader{r: body, c: body, n: n, key: key, off: off}, nil
}

// exactReader fails with io.ErrUnexpectedEOF when the body ends before n bytes.
type exactReader struct {
	r   io.Reader
	c   io.Closer
	n   int64
	key string
	off int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	m, err := e.r.Read(p)
	e.n -= int64(m)
	if err == io.EOF && e.n > 0 {
		return m, fmt.Errorf("get %s: range at %d: %d bytes short: %w", e.key, e.off, e.n, io.ErrUnexpectedEOF)
	}
	return m, err
}

func (e *exactReader) Close() error { return e.c.Close() }
