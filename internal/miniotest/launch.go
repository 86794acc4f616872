package miniotest

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Launch starts a MinIO server outside of a test (the benchmark harness,
// internal/benchrun): the same binary lookup, loopback address, credentials
// and start-up checks as Start, but with the caller's data directory, no
// testing.TB, and errors returned instead of skips. The caller must Stop it.
// Restart and the bucket helpers that take a testing.TB are for tests only.
func Launch(dataDir string) (*Server, error) {
	bin, err := findBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("miniotest: data dir: %w", err)
	}
	s := &Server{bin: bin, dataDir: dataDir, log: newTailBuffer(logTailLines)}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		if s.addr, err = freeAddr(); err != nil {
			return nil, err
		}
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("miniotest: %w\nminio log tail:\n%s", lastErr, s.log.String())
	}
	s.client, err = minio.New(s.addr, &minio.Options{
		Creds:  credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region: "us-east-1",
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("miniotest: client: %w", err)
	}
	return s, nil
}

// MakeBucket creates a bucket by name (for callers without a testing.TB).
func (s *Server) MakeBucket(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{})
}

// PID is the server process id, 0 when it is not running (to read its CPU
// time from /proc).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// LogTail returns the last lines the server printed.
func (s *Server) LogTail() string { return s.log.String() }
