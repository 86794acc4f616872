// Package miniotest runs a real MinIO server for tests: one process per
// Start, on 127.0.0.1 with a free port and a t.TempDir() data directory,
// stopped when the test ends.
//
// The binary is the one `make tools` pins (<module root>/.tools/bin/minio),
// or $SEGVAULT_MINIO_BIN, or `minio` on PATH. When it is missing or does not
// start, the test is skipped locally, but fails when CI=true: a CI run must
// never pass by skipping its integration tests.
//
// It is a test helper only: nothing in the product imports it.
package miniotest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Fixed test credentials (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD).
const (
	AccessKey = "segvault-test"
	SecretKey = "segvault-test-secret"
	// KMSKeyID names the server's static KMS key (SSE-KMS key id).
	KMSKeyID = "segvault-test"
)

// kmsKey is base64 of 32 fixed bytes: test data only.
const kmsKey = "c2VndmF1bHQtdGVzdC1rbXMta2V5LTMyLWJ5dGVzISE=" // "segvault-test-kms-key-32-bytes!!"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
	logTailLines = 60
)

// Options select optional server features.
type Options struct {
	// TLS serves HTTPS with a fresh self-signed certificate for 127.0.0.1
	// (CAFile names its PEM file, for clients to trust).
	TLS bool
}

// Server is a running (or stopped, between Stop and Restart) MinIO server.
type Server struct {
	t       testing.TB
	bin     string
	dataDir string
	addr    string // 127.0.0.1:port, fixed for the server's life so Restart keeps the endpoint
	certs   string // --certs-dir when TLS
	caFile  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *tailBuffer

	client *minio.Client
}

// Start launches a MinIO server and registers its shutdown with t.Cleanup.
// On failure to find or start the binary it skips (fails when CI=true).
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWithOptions(t, Options{})
}

// StartWithOptions is Start with optional features.
func StartWithOptions(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		unavailable(t, err)
		return nil
	}
	s := &Server{t: t, bin: bin, dataDir: t.TempDir(), log: newTailBuffer(logTailLines)}
	if opts.TLS {
		s.certs = t.TempDir()
		if s.caFile, err = writeSelfSigned(s.certs); err != nil {
			t.Fatalf("miniotest: certificate: %v", err)
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		s.addr, err = freeAddr()
		if err != nil {
			unavailable(t, err)
			return nil
		}
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		unavailable(t, fmt.Errorf("%w\nminio log tail:\n%s", lastErr, s.log.String()))
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("minio %s log tail:\n%s", s.addr, s.log.String())
		}
		s.Stop()
	})
	copts := &minio.Options{
		Creds:  credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Secure: s.certs != "",
		Region: "us-east-1",
	}
	if s.certs != "" {
		tr, err := minio.DefaultTransport(true)
		if err != nil {
			t.Fatalf("miniotest: transport: %v", err)
		}
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(s.caFile)
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		copts.Transport = tr
	}
	s.client, err = minio.New(s.addr, copts)
	if err != nil {
		t.Fatalf("miniotest: client: %v", err)
	}
	if err := s.waitServing(); err != nil {
		t.Fatalf("miniotest: %v\nminio log tail:\n%s", err, s.log.String())
	}
	return s
}

// waitServing waits until the server answers a signed request: MinIO is
// "live" before its IAM sub-system is initialised, and a test's first
// request in between fails with 503 XMinioIAMNotInitialized (seen on a
// loaded machine as a false "permanent failure classed transient").
func (s *Server) waitServing() error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.client.ListBuckets(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("minio at %s live but not serving after %s: %v", s.addr, startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("miniotest: MinIO unavailable (integration tests may not be skipped in CI): %v", err)
	}
	t.Skipf("miniotest: MinIO unavailable, run make tools: %v", err)
}

// findBinary: $SEGVAULT_MINIO_BIN, then <module root>/.tools/bin/minio, then PATH.
func findBinary() (string, error) {
	if p := os.Getenv("SEGVAULT_MINIO_BIN"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("SEGVAULT_MINIO_BIN=%s is not an executable file", p)
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".tools", "bin", "minio")
				if isExecutable(p) {
					return p, nil
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("no minio binary in $SEGVAULT_MINIO_BIN, <module root>/.tools/bin/minio or PATH")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs the process and waits until it is live or has exited.
func (s *Server) start() error {
	args := []string{"server", "--quiet", "--address", s.addr}
	if s.certs != "" {
		args = append(args, "--certs-dir", s.certs)
	}
	cmd := exec.Command(s.bin, append(args, s.dataDir)...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey,
		"MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_REGION=us-east-1",
		// A test server must answer immediately after Restart rather than wait
		// for drives, and must not phone home.
		"MINIO_CALLHOME_ENABLE=off",
		// A static KMS key enables SSE-S3 and SSE-KMS (key id "segvault-test").
		"MINIO_KMS_SECRET_KEY="+KMSKeyID+":"+kmsKey,
	)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	if s.certs != "" {
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // liveness probe only
	}
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("minio exited during start-up: %v", cmd.ProcessState)
		default:
		}
		resp, err := hc.Get(s.URL() + "/minio/health/live")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("minio not live at %s after %s", s.addr, startTimeout)
}

// Stop terminates the server (SIGTERM, then SIGKILL after a grace period).
// The data directory is kept, so Restart brings the same objects back.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Restart stops the server if it runs and starts it again on the same
// address with the same data directory (for outage tests).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the old socket may linger briefly
		if err = s.start(); err == nil {
			if err = s.waitServing(); err == nil {
				return
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("miniotest: restart %s: %v\nminio log tail:\n%s", s.addr, err, s.log.String())
}

// Endpoint is host:port.
func (s *Server) Endpoint() string { return s.addr }

// URL is http://host:port, or https:// with TLS.
func (s *Server) URL() string {
	if s.certs != "" {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// CAFile is the PEM certificate a TLS server presents ("" without TLS).
func (s *Server) CAFile() string { return s.caFile }

// AccessKey returns the fixed test access key.
func (s *Server) AccessKey() string { return AccessKey }

// SecretKey returns the fixed test secret key.
func (s *Server) SecretKey() string { return SecretKey }

// DataDir is the server's single drive. Objects are stored in MinIO's
// xl.meta format (small objects inlined, every shard protected by a bitrot
// hash), so editing it byte-wise does not reliably produce "silently changed
// content": use CorruptObject for that.
func (s *Server) DataDir() string { return s.dataDir }

// Client is an unrestricted minio-go client for the server's root user.
func (s *Server) Client() *minio.Client { return s.client }

var bucketSeq atomic.Int64

// NewBucket creates a fresh, uniquely named bucket and returns its name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	return s.newBucket(t, false)
}

// NewObjectLockBucket creates a fresh bucket with object locking enabled
// (needed to test retention).
func (s *Server) NewObjectLockBucket(t testing.TB) string {
	t.Helper()
	return s.newBucket(t, true)
}

func (s *Server) newBucket(t testing.TB, lock bool) string {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("test-%d-%s", bucketSeq.Add(1), hex.EncodeToString(rnd[:]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{ObjectLocking: lock}); err != nil {
		t.Fatalf("miniotest: make bucket %s: %v", name, err)
	}
	return name
}

// CorruptObject replaces an object's content with mutate(content), keeping
// its user metadata, through an unconditional PutObject: the store then
// serves bytes that no longer match what was recorded when it was written,
// which is what silent corruption looks like to a client. (Editing xl.meta
// on disk instead would trip MinIO's own bitrot check or its inlining.)
func (s *Server) CorruptObject(t testing.TB, bucket, key string, mutate func([]byte) []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	obj, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("miniotest: corrupt %s: get: %v", key, err)
	}
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("miniotest: corrupt %s: read: %v", key, err)
	}
	st, err := obj.Stat()
	if err != nil {
		t.Fatalf("miniotest: corrupt %s: stat: %v", key, err)
	}
	obj.Close()
	data = mutate(data)
	_, err = s.client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		UserMetadata: st.UserMetadata,
		ContentType:  st.ContentType,
	})
	if err != nil {
		t.Fatalf("miniotest: corrupt %s: put: %v", key, err)
	}
}

// tailBuffer keeps the last n lines written to it.
type tailBuffer struct {
	mu    sync.Mutex
	n     int
	lines []string
	part  []byte
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{n: n} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.part = append(b.part, p...)
	for {
		i := bytes.IndexByte(b.part, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.part[:i]))
		b.part = b.part[i+1:]
		if len(b.lines) > b.n {
			b.lines = b.lines[len(b.lines)-b.n:]
		}
	}
	if len(b.part) > 64<<10 { // a runaway line without newline
		b.part = b.part[len(b.part)-64<<10:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	w := bufio.NewWriter(&sb)
	for _, l := range b.lines {
		fmt.Fprintln(w, l)
	}
	if len(b.part) > 0 {
		fmt.Fprintln(w, string(b.part))
	}
	w.Flush()
	return sb.String()
}

// writeSelfSigned writes public.crt and private.key (MinIO's names) for
// 127.0.0.1 into dir and returns the certificate's path.
func writeSelfSigned(dir string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "miniotest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	crt := filepath.Join(dir, "public.crt")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "private.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", err
	}
	return crt, nil
}
