package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// newTestS3 opens a fresh bucket on srv with 5 MiB parts (S3's minimum), so
// multipart paths run on small data.
func newTestS3(t testing.TB, srv *miniotest.Server, bucket string, mod func(*uploader.S3Options)) *uploader.S3 {
	t.Helper()
	o := uploader.S3Options{
		Endpoint:  srv.URL(),
		Region:    "us-east-1",
		Bucket:    bucket,
		PathStyle: true,
		AccessKey: srv.AccessKey(),
		SecretKey: srv.SecretKey(),
		PartSize:  5 << 20,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := uploader.NewS3(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
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

func newTestLocal(t *testing.T) uploader.Bucket {
	t.Helper()
	l, err := uploader.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sha256Hex(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}
func crcHex(p []byte) string { return formatCRC(crc32.Checksum(p, castagnoli)) }

func mustGet(t testing.TB, b uploader.BucketReader, key string) ([]byte, uploader.ObjectInfo) {
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

func mustCreate(t testing.TB, b uploader.BucketWriter, key string, data []byte, opts uploader.PutOptions) {
	t.Helper()
	if opts.SHA256 == "" && opts.Metadata != nil {
		opts.SHA256, opts.CRC32C = sha256Hex(data), crcHex(data)
	}
	if err := b.Create(context.Background(), key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
}

func putOpts(data []byte) uploader.PutOptions {
	return uploader.PutOptions{SHA256: sha256Hex(data), CRC32C: crcHex(data)}
}
