package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segvault/segvault/uploader"

	"github.com/klauspost/compress/zstd"
)

// CompressionAuto (the default) compresses with zstd unless a sample of the
// first block shows the data does not compress (already-compressed batches).
const CompressionAuto = "auto"

const (
	// readBlock is the unit PutFile reads the source in, and the size of
	// the sample CompressionAuto decides on.
	readBlock = 256 << 10
	// autoMaxRatio: a sample compressing to more than this fraction of its
	// size is stored as-is.
	autoMaxRatio = 0.9
	// DefaultMemoryLimit is how many stored bytes PutFile keeps in memory
	// before spooling to a temp file.
	DefaultMemoryLimit = 8 << 20
	// zstdWindow is the encoder window (its history buffers dominate an
	// encoder's memory); decoders accept up to zstdMaxWindow.
	zstdWindow    = 4 << 20
	zstdMaxWindow = 32 << 20
)

// ObjectExt is the key suffix PutFile appends for a stored form.
func ObjectExt(compression, encryption string) string {
	ext := ""
	if compression == CompressionZstd {
		ext += ".zst"
	}
	if encryption != EncryptionNone {
		ext += ".enc"
	}
	return ext
}

// EncoderOptions configure an Encoder.
type EncoderOptions struct {
	// TempDir holds spool files for objects whose stored form exceeds
	// MemoryLimit; "" means os.TempDir(). Put it on a filesystem with room
	// for (concurrent uploads) x (largest stored segment).
	TempDir string
	// MemoryLimit is the largest stored form kept in memory (default
	// DefaultMemoryLimit). Negative: always spool.
	MemoryLimit int64
}

// Encoder turns files into stored objects: PutFile. It pools zstd encoders
// and buffers; one Encoder serves any number of concurrent PutFile calls.
type Encoder struct {
	opts EncoderOptions

	mu       sync.Mutex
	zstdPool map[zstd.EncoderLevel]*sync.Pool

	samplers sync.Pool // *zstd.Encoder with a readBlock window, for CompressionAuto
	readBufs sync.Pool // *[]byte, readBlock
	memBufs  sync.Pool // *bytes.Buffer, grown up to MemoryLimit
}

// NewEncoder returns an Encoder.
func NewEncoder(opts EncoderOptions) *Encoder {
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	return &Encoder{
		opts:     opts,
		zstdPool: make(map[zstd.EncoderLevel]*sync.Pool),
		readBufs: sync.Pool{New: func() any { b := make([]byte, readBlock); return &b }},
		memBufs:  sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
}

// EncodeOptions describe how one file is stored.
type EncodeOptions struct {
	// Compression: CompressionAuto (also ""), CompressionZstd or CompressionNone.
	Compression string
	// Level is the zstd level, 1 (fastest) to 22; 0 means 3, zstd's default.
	Level int
	// Key enables client-side encryption (EncryptionAESGCMStream) when set.
	Key *Key
	// ChunkExp is the log2 of the encryption chunk size; 0 means 16 (64 KiB).
	ChunkExp int
	// ContentType and Metadata are passed to the store.
	ContentType string
	Metadata    map[string]string
}

// PutResult is what PutFile stored: the raw file's size and digests and the
// object, ready for a manifest's FileRecord.
type PutResult struct {
	RawSize   int64
	RawSHA256 string
	RawCRC32C string
	Object    StoredObject
	// Existed reports that an object with the same raw content was already
	// at the key (a retried or repeated upload); Object then describes that
	// object, which was not touched.
	Existed bool
}

// FileRecord returns the manifest record of the file.
func (r PutResult) FileRecord(name string, mtime time.Time) FileRecord {
	return FileRecord{Name: name, Size: r.RawSize, SHA256: r.RawSHA256, CRC32C: r.RawCRC32C, ModTime: mtime, Object: r.Object}
}

func (e *Encoder) zstdEncoder(level int) (*zstd.Encoder, *sync.Pool, error) {
	if level == 0 {
		level = 3
	}
	if level < 1 || level > 22 {
		return nil, nil, fmt.Errorf("zstd level %d outside 1..22", level)
	}
	l := zstd.EncoderLevelFromZstd(level)
	e.mu.Lock()
	p := e.zstdPool[l]
	if p == nil {
		p = &sync.Pool{}
		e.zstdPool[l] = p
	}
	e.mu.Unlock()
	if enc, ok := p.Get().(*zstd.Encoder); ok {
		return enc, p, nil
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow), zstd.WithEncoderCRC(true)) // WithLowerEncoderMem costs ~40% speed
	if err != nil {
		return nil, nil, err
	}
	return enc, p, nil
}

// sampleSize is the zstd-compressed size of sample, from a small-window
// encoder at the default level: cheap, and a fair predictor of the ratio.
func (e *Encoder) sampleSize(sample []byte) (int, error) {
	enc, ok := e.samplers.Get().(*zstd.Encoder)
	if !ok {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(readBlock), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return 0, err
		}
	}
	defer e.samplers.Put(enc)
	bp := e.readBufs.Get().(*[]byte)
	defer e.readBufs.Put(bp)
	// Output past the buffer's capacity (incompressible input grows a
	// little) goes to a new slice; the pooled one is unchanged.
	return len(enc.EncodeAll(sample, (*bp)[:0])), nil
}

// PutFile stores rawSize bytes read from src (rawSize < 0: unknown) at key +
// ObjectExt(compression, encryption), in one pass: the bytes are hashed
// (SHA-256, CRC-32C), compressed, encrypted, and hashed again as stored, and
// the stored form is staged in memory (up to MemoryLimit) or in a temp file,
// then created in b with its size and digests known, so the store can verify
// them (S3: the CRC-32C checksum) and record them as metadata (Meta*
// constants), and a retry can rewind it.
//
// Staging rather than streaming multipart is deliberate: S3 takes user
// metadata only when an upload starts, whole-object retries need a re-readable
// source, and the Local store and single PUTs need the size. Memory stays
// bounded (a read block, the zstd window, one encryption chunk, MemoryLimit);
// disk use is the stored size while the upload runs.
//
// Creates are create-only. If an object is already at the key and its
// metadata records the same raw size and SHA-256 (or, lacking that metadata,
// its stored bytes are identical), PutFile succeeds with Existed set and
// describes the existing object; otherwise it returns an error wrapping
// ErrConflict.
func (e *Encoder) PutFile(ctx context.Context, b uploader.Bucket, key string, src io.Reader, rawSize int64, opts EncodeOptions) (PutResult, error) {
	comp := opts.Compression
	switch comp {
	case "", CompressionAuto, CompressionZstd, CompressionNone:
	default:
		return PutResult{}, fmt.Errorf("put %s: unknown compression %q", key, comp)
	}

	rbp := e.readBufs.Get().(*[]byte)
	defer e.readBufs.Put(rbp)
	buf := *rbp

	src = &uploader.CtxReader{Ctx: ctx, R: src}
	first, err := io.ReadFull(src, buf)
	srcEOF := false
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		srcEOF = true
	default:
		return PutResult{}, fmt.Errorf("put %s: read: %w", key, err)
	}

	var zenc *zstd.Encoder
	var zpool *sync.Pool
	if comp != CompressionNone {
		zenc, zpool, err = e.zstdEncoder(opts.Level)
		if err != nil {
			return PutResult{}, fmt.Errorf("put %s: %w", key, err)
		}
		defer func() { zenc.Reset(nil); zpool.Put(zenc) }()
		if comp != CompressionZstd {
			comp = CompressionNone // also for an empty file: a zstd frame would only add bytes
			if first > 0 {
				compressed, err := e.sampleSize(buf[:first])
				if err != nil {
					return PutResult{}, fmt.Errorf("put %s: %w", key, err)
				}
				if float64(compressed) <= autoMaxRatio*float64(first) {
					comp = CompressionZstd
				}
			}
		}
	}
	enc := EncryptionNone
	keyID := ""
	if opts.Key != nil {
		enc = EncryptionAESGCMStream
		keyID = opts.Key.ID()
	}

	sp := e.newSpool()
	defer sp.release()
	stored := newDigestWriter(sp)

	// Build the chain back to front: raw → [zstd] → [encrypt] → stored digests → spool.
	var w io.Writer = stored
	var ew *encryptWriter
	if opts.Key != nil {
		ew, err = newEncryptWriter(w, opts.Key, opts.ChunkExp)
		if err != nil {
			return PutResult{}, fmt.Errorf("put %s: %w", key, err)
		}
		w = ew
	}
	if comp == CompressionZstd {
		zenc.Reset(w)
		w = zenc
	}
	raw := newDigestWriter(w)

	if _, err := raw.Write(buf[:first]); err != nil {
		return PutResult{}, fmt.Errorf("put %s: %w", key, err)
	}
	if !srcEOF {
		if _, err := io.CopyBuffer(raw, struct{ io.Reader }{src}, buf); err != nil {
			return PutResult{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	if comp == CompressionZstd {
		if err := zenc.Close(); err != nil {
			return PutResult{}, fmt.Errorf("put %s: compress: %w", key, err)
		}
	}
	if ew != nil {
		if err := ew.Close(); err != nil {
			return PutResult{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	if rawSize >= 0 && raw.n != rawSize {
		return PutResult{}, fmt.Errorf("put %s: source has %d bytes, expected %d (changed while reading?)", key, raw.n, rawSize)
	}
	body, err := sp.reader()
	if err != nil {
		return PutResult{}, fmt.Errorf("put %s: %w", key, err)
	}

	res := PutResult{
		RawSize:   raw.n,
		RawSHA256: raw.sha(),
		RawCRC32C: raw.crc(),
		Object: StoredObject{
			Key:         key + ObjectExt(comp, enc),
			Size:        stored.n,
			SHA256:      stored.sha(),
			CRC32C:      stored.crc(),
			Compression: comp,
			Encryption:  enc,
			KeyID:       keyID,
		},
	}
	md := make(map[string]string, len(opts.Metadata)+6)
	for k, v := range opts.Metadata {
		md[strings.ToLower(k)] = v
	}
	md[uploader.MetaRawSize] = strconv.FormatInt(res.RawSize, 10)
	md[uploader.MetaRawSHA256] = res.RawSHA256
	md[uploader.MetaRawCRC32C] = res.RawCRC32C
	md[uploader.MetaCompression] = comp
	if enc != EncryptionNone {
		md[uploader.MetaEncryption] = enc
		md[uploader.MetaKeyID] = keyID
	}
	put := uploader.PutOptions{SHA256: res.Object.SHA256, CRC32C: res.Object.CRC32C, ContentType: opts.ContentType, Metadata: md}
	err = b.Create(ctx, res.Object.Key, body, res.Object.Size, put)
	if err == nil {
		return res, nil
	}
	if !errors.Is(err, uploader.ErrExists) {
		return PutResult{}, err
	}
	existing, same, cerr := sameRaw(ctx, b, res)
	if cerr != nil {
		return PutResult{}, cerr
	}
	if !same {
		return PutResult{}, fmt.Errorf("put %s: %w", res.Object.Key, uploader.ErrConflict)
	}
	res.Object = existing
	res.Existed = true
	return res, nil
}

// sameRaw compares the object at want.Object.Key with the file just encoded.
// With raw-size/raw-sha256 metadata the raw content decides, whatever the
// stored form (encryption is randomised, so a re-upload never produces the
// same stored bytes); without it, the stored bytes must be identical.
func sameRaw(ctx context.Context, b uploader.BucketReader, want PutResult) (StoredObject, bool, error) {
	key := want.Object.Key
	info, err := b.Stat(ctx, key)
	if err != nil {
		return StoredObject{}, false, fmt.Errorf("compare existing %s: %w", key, err)
	}
	md := info.Metadata
	if rs, ok := parseSize(md[uploader.MetaRawSize]); ok && md[uploader.MetaRawSHA256] != "" {
		if rs != want.RawSize || md[uploader.MetaRawSHA256] != want.RawSHA256 {
			return StoredObject{}, false, nil
		}
		obj := StoredObject{
			Key:         key,
			Size:        info.Size,
			SHA256:      md[uploader.MetaSHA256],
			CRC32C:      md[uploader.MetaCRC32C],
			Compression: md[uploader.MetaCompression],
			Encryption:  md[uploader.MetaEncryption],
			KeyID:       md[uploader.MetaKeyID],
		}
		if obj.SHA256 == "" || obj.CRC32C == "" || obj.Compression == "" {
			return StoredObject{}, false, fmt.Errorf("compare existing %s: raw digests recorded but stored digests or compression missing", key)
		}
		return obj, true, nil
	}
	same, err := uploader.SameStored(ctx, b, key, want.Object.Size, want.Object.SHA256)
	if err != nil || !same {
		return StoredObject{}, false, err
	}
	return want.Object, true, nil
}

// digestWriter hashes and counts what passes through it.
type digestWriter struct {
	w io.Writer
	h hash.Hash
	c uint32
	n int64
}

func newDigestWriter(w io.Writer) *digestWriter {
	return &digestWriter{w: w, h: sha256.New()}
}

func (d *digestWriter) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.c = crc32.Update(d.c, castagnoli, p)
	d.n += int64(len(p))
	return d.w.Write(p)
}

func (d *digestWriter) sha() string { return hex.EncodeToString(d.h.Sum(nil)) }
func (d *digestWriter) crc() string { return formatCRC(d.c) }

// spool stages the stored form: in a pooled buffer up to the memory limit,
// then in a temp file that is unlinked as soon as it is created (a crash
// leaves nothing behind).
type spool struct {
	e    *Encoder
	mem  *bytes.Buffer
	file *os.File
	size int64
}

func (e *Encoder) newSpool() *spool {
	s := &spool{e: e}
	if e.opts.MemoryLimit > 0 {
		s.mem = e.memBufs.Get().(*bytes.Buffer)
		s.mem.Reset()
	}
	return s
}

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && s.mem != nil && int64(s.mem.Len()+len(p)) <= s.e.opts.MemoryLimit {
		s.size += int64(len(p))
		return s.mem.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.e.opts.TempDir, "segvault-spool-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.file = f
		_ = os.Remove(f.Name()) // keep using the open file; where unlink-while-open fails, release removes it
		if s.mem != nil && s.mem.Len() > 0 {
			if _, err := f.Write(s.mem.Bytes()); err != nil {
				return 0, fmt.Errorf("spool: %w", err)
			}
			s.mem.Reset()
		}
	}
	n, err := s.file.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("spool: %w", err)
	}
	return n, nil
}

// spoolReader is what Create reads: seekable for retries, ReaderAt for
// parallel multipart uploads.
type spoolReader interface {
	io.ReadSeeker
	io.ReaderAt
}

func (s *spool) reader() (spoolReader, error) {
	if s.file == nil {
		if s.mem == nil {
			return bytes.NewReader(nil), nil
		}
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	return io.NewSectionReader(s.file, 0, s.size), nil
}

func (s *spool) release() {
	if s.file != nil {
		name := s.file.Name()
		s.file.Close()
		_ = os.Remove(name)
		s.file = nil
	}
	if s.mem != nil {
		// Do not keep buffers that grew past the limit (they cannot, but a
		// pool must not pin arbitrary memory).
		if int64(s.mem.Cap()) <= 2*s.e.opts.MemoryLimit {
			s.e.memBufs.Put(s.mem)
		}
		s.mem = nil
	}
}
