package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"

	"github.com/klauspost/compress/zstd"
)

// compressible is text shaped like log records.
func compressible(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"offset":%d,"ts":%d,"key":"user-%d","value":"event payload %d"}`+"\n", i, 1700000000000+i*7, i%977, i*31%1000)
	}
	return b.Bytes()[:n]
}

func readAllVerified(t testing.TB, b uploader.BucketReader, rec FileRecord, opts DecodeOptions) ([]byte, error) {
	t.Helper()
	rc, err := OpenVerified(context.Background(), b, rec, opts)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestPutFileRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := newTestLocal(t)
	key := testKey(t, 3)
	enc := NewEncoder(EncoderOptions{TempDir: t.TempDir(), MemoryLimit: 256 << 10})
	inputs := map[string][]byte{
		"empty":          nil,
		"one":            {42},
		"text-small":     compressible(1000),
		"text-big":       compressible(3 << 20), // spills to the temp file
		"random-small":   randBytes(1, 5000),
		"random-big":     randBytes(2, 1<<20+3),
		"random-block":   randBytes(3, readBlock),
		"random-block+1": randBytes(4, readBlock+1),
	}
	for name, data := range inputs {
		for _, comp := range []string{CompressionAuto, CompressionZstd, CompressionNone} {
			for _, k := range []*Key{nil, key} {
				t.Run(fmt.Sprintf("%s/%s/enc=%v", name, comp, k != nil), func(t *testing.T) {
					base := fmt.Sprintf("obj/%s-%s-%v", name, comp, k != nil)
					res, err := enc.PutFile(ctx, b, base, bytes.NewReader(data), int64(len(data)), EncodeOptions{Compression: comp, Key: k, ChunkExp: 12})
					if err != nil {
						t.Fatal(err)
					}
					wantComp := comp
					if comp == CompressionAuto {
						wantComp = CompressionNone // random, tiny or empty
						if strings.HasPrefix(name, "text") {
							wantComp = CompressionZstd
						}
					}
					o := res.Object
					if o.Compression != wantComp || res.Existed {
						t.Errorf("compression %s (want %s), existed %v", o.Compression, wantComp, res.Existed)
					}
					if o.Key != base+ObjectExt(o.Compression, o.Encryption) {
						t.Errorf("key %s", o.Key)
					}
					if res.RawSize != int64(len(data)) || res.RawSHA256 != sha256Hex(data) || res.RawCRC32C != crcHex(data) {
						t.Errorf("raw digests %+v", res)
					}
					stored, info := mustGet(t, b, o.Key)
					if info.Size != o.Size || sha256Hex(stored) != o.SHA256 || crcHex(stored) != o.CRC32C {
						t.Errorf("stored digests do not match the object")
					}
					if k != nil && (o.Encryption != EncryptionAESGCMStream || o.KeyID != k.ID()) {
						t.Errorf("encryption %q key %q", o.Encryption, o.KeyID)
					}
					if k == nil && o.Compression == CompressionNone && !bytes.Equal(stored, data) {
						t.Errorf("stored form of uncompressed data differs")
					}
					got, err := readAllVerified(t, b, res.FileRecord("f", info.ModTime), DecodeOptions{Keys: []*Key{testKey(t, 9), key}})
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("OpenVerified: %v (got %d bytes)", err, len(got))
					}
				})
			}
		}
	}
}

func TestPutFileExisting(t *testing.T) {
	ctx := context.Background()
	b := newTestLocal(t)
	enc := NewEncoder(EncoderOptions{})
	data := compressible(50000)
	for _, k := range []*Key{nil, testKey(t, 5)} {
		opts := EncodeOptions{Key: k}
		first, err := enc.PutFile(ctx, b, fmt.Sprintf("e%v", k != nil), bytes.NewReader(data), int64(len(data)), opts)
		if err != nil {
			t.Fatal(err)
		}
		// The same file again (a retry): success, describing the existing object,
		// even when encryption makes the new stored form differ.
		again, err := enc.PutFile(ctx, b, fmt.Sprintf("e%v", k != nil), bytes.NewReader(data), int64(len(data)), opts)
		if err != nil {
			t.Fatalf("identical re-upload: %v", err)
		}
		if !again.Existed || again.Object != first.Object {
			t.Fatalf("re-upload: existed %v, object %+v, want %+v", again.Existed, again.Object, first.Object)
		}
		other := bytes.Clone(data)
		other[100] ^= 1
		_, err = enc.PutFile(ctx, b, fmt.Sprintf("e%v", k != nil), bytes.NewReader(other), int64(len(other)), opts)
		if !errors.Is(err, uploader.ErrConflict) {
			t.Fatalf("different content: %v, want uploader.ErrConflict", err)
		}
		got, err := readAllVerified(t, b, first.FileRecord("f", time.Time{}), DecodeOptions{Keys: []*Key{k}})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("original damaged: %v", err)
		}
	}
}

func TestPutFileSourceSizeMismatch(t *testing.T) {
	b := newTestLocal(t)
	enc := NewEncoder(EncoderOptions{})
	_, err := enc.PutFile(context.Background(), b, "m", bytes.NewReader([]byte("abc")), 4, EncodeOptions{})
	if err == nil || !strings.Contains(err.Error(), "expected 4") {
		t.Fatalf("got %v", err)
	}
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error { return fmt.Errorf("object %s created", oi.Key) }); err != nil {
		t.Fatal(err)
	}
}

func TestPutFileBadOptions(t *testing.T) {
	b := newTestLocal(t)
	enc := NewEncoder(EncoderOptions{})
	for _, o := range []EncodeOptions{{Compression: "gzip"}, {Level: 23}, {Key: testKey(t, 1), ChunkExp: 30}} {
		if _, err := enc.PutFile(context.Background(), b, "x", bytes.NewReader([]byte("abc")), 3, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestOpenVerifiedCorruption: every change to a stored object is reported as
// ErrIntegrity naming the key, at EOF at the latest, never as success.
func TestOpenVerifiedCorruption(t *testing.T) {
	ctx := context.Background()
	key := testKey(t, 3)
	enc := NewEncoder(EncoderOptions{})
	data := compressible(300 << 10)
	mutations := map[string]func([]byte) []byte{
		"flip first":  func(p []byte) []byte { p[0] ^= 1; return p },
		"flip middle": func(p []byte) []byte { p[len(p)/2] ^= 0x10; return p },
		"flip last":   func(p []byte) []byte { p[len(p)-1] ^= 1; return p },
		"truncate":    func(p []byte) []byte { return p[:len(p)-10] },
		"append":      func(p []byte) []byte { return append(p, 1, 2, 3) },
		"empty":       func(p []byte) []byte { return p[:0] },
	}
	for _, comp := range []string{CompressionZstd, CompressionNone} {
		for _, k := range []*Key{nil, key} {
			for name, mutate := range mutations {
				t.Run(fmt.Sprintf("%s/enc=%v/%s", comp, k != nil, name), func(t *testing.T) {
					b := newTestLocal(t).(*uploader.Local)
					res, err := enc.PutFile(ctx, b, "c", bytes.NewReader(data), int64(len(data)), EncodeOptions{Compression: comp, Key: k})
					if err != nil {
						t.Fatal(err)
					}
					path := b.Root() + "/" + res.Object.Key
					stored, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					writeFile(t, path, mutate(stored))
					got, err := readAllVerified(t, b, res.FileRecord("f", time.Time{}), DecodeOptions{Keys: []*Key{key}})
					var ie *IntegrityError
					if !errors.Is(err, uploader.ErrIntegrity) || !errors.As(err, &ie) || ie.Key != res.Object.Key || !strings.Contains(err.Error(), res.Object.Key) {
						t.Fatalf("got %v (%d bytes), want an IntegrityError naming %s", err, len(got), res.Object.Key)
					}
					if name != "truncate" && name != "empty" && name != "append" && !strings.HasPrefix(ie.Check, "stored") {
						t.Errorf("check %q, want a stored-digest mismatch (%v)", ie.Check, err)
					}
				})
			}
		}
	}
}

// TestOpenVerifiedRecordMismatch: the object is intact but the record says
// otherwise (wrong raw digest, wrong sizes).
func TestOpenVerifiedRecordMismatch(t *testing.T) {
	ctx := context.Background()
	b := newTestLocal(t)
	data := compressible(100000)
	res, err := NewEncoder(EncoderOptions{}).PutFile(ctx, b, "r", bytes.NewReader(data), int64(len(data)), EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := res.FileRecord("f", time.Time{})
	for name, tc := range map[string]struct {
		mod   func(*FileRecord)
		check string
	}{
		"raw sha":     {func(r *FileRecord) { r.SHA256 = strings.Repeat("0", 64) }, "raw sha256"},
		"raw crc":     {func(r *FileRecord) { r.CRC32C = "00000000" }, "raw crc32c"},
		"raw larger":  {func(r *FileRecord) { r.Size++ }, "raw size"},
		"raw smaller": {func(r *FileRecord) { r.Size-- }, "raw size"},
		"stored size": {func(r *FileRecord) { r.Object.Size++ }, "stored size"},
		"stored sha":  {func(r *FileRecord) { r.Object.SHA256 = strings.Repeat("f", 64) }, "stored sha256"},
	} {
		t.Run(name, func(t *testing.T) {
			rec := good
			tc.mod(&rec)
			_, err := readAllVerified(t, b, rec, DecodeOptions{})
			var ie *IntegrityError
			if !errors.As(err, &ie) || ie.Check != tc.check {
				t.Fatalf("got %v, want check %q", err, tc.check)
			}
		})
	}
	rec := good
	rec.Object.Encryption, rec.Object.KeyID = EncryptionAESGCMStream, "0123456789abcdef"
	if _, err := OpenVerified(ctx, b, rec, DecodeOptions{}); !errors.Is(err, uploader.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	rec = good
	rec.Object.Key += ".missing"
	if _, err := OpenVerified(ctx, b, rec, DecodeOptions{}); !errors.Is(err, uploader.ErrNotFound) || errors.Is(err, uploader.ErrIntegrity) {
		t.Fatalf("missing object: %v", err)
	}
}

// zstdBomb is a valid zstd frame of n zero bytes (a few hundred bytes).
func zstdBomb(t testing.TB, n int) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < n; i += len(zeros) {
		if _, err := zw.Write(zeros[:min(len(zeros), n-i)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// bombRecord stores a bomb at key and returns a record that is right about
// the stored bytes but claims a raw size of 1 KiB.
func bombRecord(t testing.TB, b uploader.Bucket, key string, bomb []byte) FileRecord {
	t.Helper()
	mustCreate(t, b, key, bomb, putOpts(bomb))
	return FileRecord{Name: "bomb", Size: 1024, SHA256: strings.Repeat("0", 64), CRC32C: "00000000",
		Object: StoredObject{Key: key, Size: int64(len(bomb)), SHA256: sha256Hex(bomb), CRC32C: crcHex(bomb), Compression: CompressionZstd}}
}

func TestOpenVerifiedBomb(t *testing.T) {
	b := newTestLocal(t)
	bomb := zstdBomb(t, 256<<20) // 256 MiB of zeros
	t.Logf("bomb: %d stored bytes", len(bomb))
	rec := bombRecord(t, b, "bomb.zst", bomb)
	rc, err := OpenVerified(context.Background(), b, rec, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Check != "raw size" || !strings.Contains(err.Error(), "bomb.zst") {
		t.Fatalf("got %v after %d bytes", err, n)
	}
	if n > rec.Size {
		t.Fatalf("returned %d bytes, more than the recorded %d", n, rec.Size)
	}
}

// flakyBody fails with a connection reset after n bytes.
type flakyBody struct {
	io.ReadCloser
	n int
}

func (f *flakyBody) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.ReadCloser.Read(p)
	f.n -= n
	return n, err
}

type flakyGetBucket struct {
	uploader.Bucket
	after int
}

func (f flakyGetBucket) Get(ctx context.Context, key string) (io.ReadCloser, uploader.ObjectInfo, error) {
	rc, info, err := f.Bucket.Get(ctx, key)
	if err != nil {
		return nil, info, err
	}
	return &flakyBody{ReadCloser: rc, n: f.after}, info, nil
}

// TestOpenVerifiedTransportError: a connection failure mid-object is a
// transport error, not corruption, at every stage of decoding.
func TestOpenVerifiedTransportError(t *testing.T) {
	ctx := context.Background()
	b := newTestLocal(t)
	enc := NewEncoder(EncoderOptions{})
	key := testKey(t, 1)
	data := compressible(1 << 20)
	for _, comp := range []string{CompressionZstd, CompressionNone} {
		for _, k := range []*Key{nil, key} {
			res, err := enc.PutFile(ctx, b, fmt.Sprintf("t-%s-%v", comp, k != nil), bytes.NewReader(data), int64(len(data)), EncodeOptions{Compression: comp, Key: k})
			if err != nil {
				t.Fatal(err)
			}
			for _, after := range []int{0, 10, 61, int(res.Object.Size / 2)} {
				_, err := readAllVerified(t, flakyGetBucket{b, after}, res.FileRecord("f", time.Time{}), DecodeOptions{Keys: []*Key{key}})
				if err == nil || errors.Is(err, uploader.ErrIntegrity) || !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("%s enc=%v after %d: got %v, want the transport error", comp, k != nil, after, err)
				}
				if !uploader.IsTransient(err) {
					t.Errorf("transport error not transient: %v", err)
				}
			}
		}
	}
}
