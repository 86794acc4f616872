package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

const benchSize = 32 << 20 // two 16 MiB parts on uploader.S3

var benchData = map[string]func() []byte{
	"compressible":   func() []byte { return compressible(benchSize) },
	"incompressible": func() []byte { return randBytes(42, benchSize) },
}

// cpuMeter reports this process's CPU time per operation (user+system), a
// measure that survives a busy shared machine better than wall time. The
// MinIO server is another process and is not counted.
func cpuMeter(b *testing.B) func() {
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	return func() {
		var after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	}
}

// nullBucket accepts every Create and discards the body: the pipeline's own cost.
type nullBucket struct{ uploader.Bucket }

func (nullBucket) Create(_ context.Context, _ string, r io.Reader, _ int64, _ uploader.PutOptions) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func (nullBucket) String() string { return "null" }

// BenchmarkEncode is PutFile without a store (CPU: hashing, zstd, AES-GCM).
func BenchmarkEncode(b *testing.B) {
	key := testKey(b, 1)
	for _, dname := range []string{"compressible", "incompressible"} {
		data := benchData[dname]()
		for _, mode := range []struct {
			name string
			opts EncodeOptions
		}{
			{"auto", EncodeOptions{}},
			{"none", EncodeOptions{Compression: CompressionNone}},
			{"auto-enc", EncodeOptions{Key: key}},
		} {
			b.Run(dname+"/"+mode.name, func(b *testing.B) {
				enc := NewEncoder(EncoderOptions{TempDir: b.TempDir()})
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				defer cpuMeter(b)()
				for b.Loop() {
					if _, err := enc.PutFile(context.Background(), nullBucket{}, "k", bytes.NewReader(data), int64(len(data)), mode.opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkS3Put compares PutFile into MinIO with a plain minio-go PutObject
// of the same bytes (no compression, no digests, not create-only).
func BenchmarkS3Put(b *testing.B) {
	srv := miniotest.Start(b)
	bucket := srv.NewBucket(b)
	s := newTestS3(b, srv, bucket, func(o *uploader.S3Options) { o.PartSize = 0 })
	key := testKey(b, 1)
	enc := NewEncoder(EncoderOptions{TempDir: b.TempDir()})
	ctx := context.Background()
	seq := 0
	next := func() string { seq++; return fmt.Sprintf("bench/%d", seq) }
	for _, dname := range []string{"compressible", "incompressible"} {
		data := benchData[dname]()
		b.Run(dname+"/putobject", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			defer cpuMeter(b)()
			for b.Loop() {
				if _, err := srv.Client().PutObject(ctx, bucket, next(), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, mode := range []struct {
			name string
			opts EncodeOptions
		}{
			{"putfile-auto", EncodeOptions{}},
			{"putfile-none", EncodeOptions{Compression: CompressionNone}},
			{"putfile-auto-enc", EncodeOptions{Key: key}},
		} {
			b.Run(dname+"/"+mode.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				defer cpuMeter(b)()
				var stored int64
				for b.Loop() {
					res, err := enc.PutFile(ctx, s, next(), bytes.NewReader(data), int64(len(data)), mode.opts)
					if err != nil {
						b.Fatal(err)
					}
					stored = res.Object.Size
				}
				b.ReportMetric(float64(stored)/float64(len(data)), "stored/raw")
			})
		}
	}
}

// BenchmarkS3Get compares OpenVerified with a plain GetObject.
func BenchmarkS3Get(b *testing.B) {
	srv := miniotest.Start(b)
	bucket := srv.NewBucket(b)
	s := newTestS3(b, srv, bucket, func(o *uploader.S3Options) { o.PartSize = 0 })
	key := testKey(b, 1)
	enc := NewEncoder(EncoderOptions{TempDir: b.TempDir()})
	ctx := context.Background()
	for _, dname := range []string{"compressible", "incompressible"} {
		data := benchData[dname]()
		plainKey := "plain/" + dname
		if _, err := srv.Client().PutObject(ctx, bucket, plainKey, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Run(dname+"/getobject", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			defer cpuMeter(b)()
			for b.Loop() {
				obj, err := srv.Client().GetObject(ctx, bucket, plainKey, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, obj); err != nil {
					b.Fatal(err)
				}
				obj.Close()
			}
		})
		for _, mode := range []struct {
			name string
			opts EncodeOptions
		}{
			{"openverified-auto", EncodeOptions{}},
			{"openverified-auto-enc", EncodeOptions{Key: key}},
		} {
			res, err := enc.PutFile(ctx, s, "v/"+dname+mode.name, bytes.NewReader(data), int64(len(data)), mode.opts)
			if err != nil {
				b.Fatal(err)
			}
			rec := res.FileRecord("f", time.Time{})
			b.Run(dname+"/"+mode.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				defer cpuMeter(b)()
				for b.Loop() {
					rc, err := OpenVerified(ctx, s, rec, DecodeOptions{Keys: []*Key{key}})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
			})
		}
	}
}
