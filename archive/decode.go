package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"github.com/segvault/segvault/uploader"

	"github.com/klauspost/compress/zstd"
)

// IntegrityError is a verification failure of one object: its bytes are not
// what the manifest records. It wraps ErrIntegrity. Transport failures while
// reading are returned as they are, never as IntegrityError.
type IntegrityError struct {
	Key      string
	Check    string // e.g. "stored sha256", "raw size", "decrypt", "decompress"
	Recorded string // what the manifest says ("" when not applicable)
	Computed string // what was read
	Err      error  // underlying decoder error, if any
}

func (e *IntegrityError) Error() string {
	msg := fmt.Sprintf("object %s: %s mismatch: recorded %s, computed %s", e.Key, e.Check, e.Recorded, e.Computed)
	if e.Recorded == "" && e.Computed == "" {
		msg = fmt.Sprintf("object %s: %s failed", e.Key, e.Check)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + ": " + uploader.ErrIntegrity.Error()
}

// Unwrap returns ErrIntegrity and the underlying error.
func (e *IntegrityError) Unwrap() []error {
	if e.Err != nil {
		return []error{uploader.ErrIntegrity, e.Err}
	}
	return []error{uploader.ErrIntegrity}
}

// DecodeOptions configure OpenVerified.
type DecodeOptions struct {
	// Keys are the client-side keys objects may be encrypted with; the
	// record's KeyID picks one.
	Keys []*Key
}

var zstdDecoders = sync.Pool{
	New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			panic(err) // only on invalid options, which are constant
		}
		return d
	},
}

// OpenVerified streams back the raw file described by rec: it reads
// rec.Object.Key, decrypts and decompresses it, and checks while streaming the
// stored size, SHA-256 and CRC-32C and the raw size, SHA-256 and CRC-32C.
// Decompression never produces more than rec.Size bytes (plus one to detect
// the excess), so a decompression bomb costs nothing.
//
// The reader returns the raw bytes as they come; on any mismatch the Read
// that would return io.EOF returns an *IntegrityError (wrapping ErrIntegrity,
// naming the key) instead, so a caller must not trust data it wrote until
// Read returned io.EOF. Errors reading from the store (transport) are
// returned unchanged. Close releases the object and the decoder.
func OpenVerified(ctx context.Context, b uploader.BucketReader, rec FileRecord, opts DecodeOptions) (io.ReadCloser, error) {
	obj := rec.Object
	var key *Key
	switch obj.Encryption {
	case EncryptionNone:
	case EncryptionAESGCMStream:
		for _, k := range opts.Keys {
			if k != nil && k.ID() == obj.KeyID {
				key = k
				break
			}
		}
		if key == nil {
			return nil, fmt.Errorf("open %s: encrypted with key %s: %w", obj.Key, obj.KeyID, uploader.ErrUnknownKey)
		}
	default:
		return nil, fmt.Errorf("open %s: unsupported encryption %q", obj.Key, obj.Encryption)
	}
	switch obj.Compression {
	case CompressionNone, CompressionZstd:
	default:
		return nil, fmt.Errorf("open %s: unsupported compression %q", obj.Key, obj.Compression)
	}
	if obj.Size < 0 || rec.Size < 0 {
		return nil, fmt.Errorf("open %s: negative size in record", obj.Key)
	}

	body, info, err := b.Get(ctx, obj.Key)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", obj.Key, err)
	}
	v := &verifyReader{rec: rec, body: body}
	if info.Size >= 0 && info.Size != obj.Size {
		body.Close()
		return nil, &IntegrityError{Key: obj.Key, Check: "stored size", Recorded: fmt.Sprint(obj.Size), Computed: fmt.Sprint(info.Size)}
	}
	v.stored = &storedReader{r: body, limit: obj.Size, h: sha256.New()}
	var r io.Reader = v.stored
	if key != nil {
		dr, err := newDecryptReader(r, key)
		if err != nil {
			err = v.classify(err, "decrypt")
			body.Close()
			return nil, err
		}
		r = dr
	}
	if obj.Compression == CompressionZstd {
		v.dec = zstdDecoders.Get().(*zstd.Decoder)
		if err := v.dec.Reset(r); err != nil {
			err = v.classify(err, "decompress")
			v.Close()
			return nil, err
		}
		r = v.dec
	}
	v.src = r
	v.rawH = sha256.New()
	return v, nil
}

// storedReader counts and hashes the stored bytes and refuses to read past
// the recorded size. Its transport error, if any, is remembered so that a
// decoder's reaction to it is not mistaken for corruption.
type storedReader struct {
	r         io.Reader
	limit     int64
	n         int64
	h         hash.Hash
	c         uint32
	transport error
	over      bool
}

func (s *storedReader) Read(p []byte) (int, error) {
	if s.transport != nil {
		return 0, s.transport
	}
	if s.n >= s.limit+1 {
		s.over = true
		return 0, io.EOF // the verifier reports the size mismatch
	}
	if rem := s.limit + 1 - s.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	s.c = crc32.Update(s.c, castagnoli, p[:n])
	s.n += int64(n)
	if s.n > s.limit {
		s.over = true
	}
	if err != nil && err != io.EOF {
		s.transport = err
	}
	return n, err
}

type verifyReader struct {
	rec    FileRecord
	body   io.ReadCloser
	stored *storedReader
	dec    *zstd.Decoder
	src    io.Reader
	rawH   hash.Hash
	rawC   uint32
	rawN   int64
	err    error
	closed bool
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Never produce more than the recorded raw size + 1.
	if rem := v.rec.Size + 1 - v.rawN; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.src.Read(p)
	if n > 0 {
		v.rawH.Write(p[:n])
		v.rawC = crc32.Update(v.rawC, castagnoli, p[:n])
		v.rawN += int64(n)
		if v.rawN > v.rec.Size {
			v.err = &IntegrityError{Key: v.rec.Object.Key, Check: "raw size", Recorded: fmt.Sprint(v.rec.Size),
				Computed: fmt.Sprintf("more than %d (decompressed output exceeds the record)", v.rec.Size)}
			return 0, v.err
		}
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		v.err = v.finish()
		if v.err == nil {
			v.err = io.EOF
		}
		if n > 0 {
			return n, nil
		}
		return 0, v.err
	default:
		v.err = v.classify(err, v.stage())
		if n > 0 {
			return n, nil
		}
		return 0, v.err
	}
}

func (v *verifyReader) stage() string {
	switch {
	case v.dec != nil:
		return "decompress"
	case v.rec.Object.Encryption != EncryptionNone:
		return "decrypt"
	}
	return "read"
}

// classify turns a decoder error into transport (returned as is) or
// corruption (IntegrityError). For corruption it drains the rest of the
// object to tell "the stored bytes changed" (digest mismatch) from "the
// stored bytes are what was written but do not decode".
func (v *verifyReader) classify(err error, stage string) error {
	if v.stored != nil && v.stored.transport != nil {
		return fmt.Errorf("read %s: %w", v.rec.Object.Key, v.stored.transport)
	}
	var de *errDecrypt
	if !errors.As(err, &de) && stage != "decompress" && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", v.rec.Object.Key, err)
	}
	if v.stored != nil {
		if _, derr := io.Copy(io.Discard, v.stored); derr != nil {
			return fmt.Errorf("read %s: %w", v.rec.Object.Key, derr)
		}
		if ierr := v.checkStored(); ierr != nil {
			ierr.Err = err
			return ierr
		}
	}
	return &IntegrityError{Key: v.rec.Object.Key, Check: stage, Err: err}
}

// checkStored compares the stored size and digests (after a full drain).
func (v *verifyReader) checkStored() *IntegrityError {
	s, o := v.stored, v.rec.Object
	switch {
	case s.over:
		return &IntegrityError{Key: o.Key, Check: "stored size", Recorded: fmt.Sprint(o.Size), Computed: fmt.Sprintf("more than %d", o.Size)}
	case s.n != o.Size:
		return &IntegrityError{Key: o.Key, Check: "stored size", Recorded: fmt.Sprint(o.Size), Computed: fmt.Sprint(s.n)}
	}
	if got := hex.EncodeToString(s.h.Sum(nil)); got != o.SHA256 {
		return &IntegrityError{Key: o.Key, Check: "stored sha256", Recorded: o.SHA256, Computed: got}
	}
	if got := formatCRC(s.c); got != o.CRC32C {
		return &IntegrityError{Key: o.Key, Check: "stored crc32c", Recorded: o.CRC32C, Computed: got}
	}
	return nil
}

// finish drains what the decoders left of the stored stream and compares
// every size and digest.
func (v *verifyReader) finish() error {
	if _, err := io.Copy(io.Discard, v.stored); err != nil {
		return fmt.Errorf("read %s: %w", v.rec.Object.Key, err)
	}
	if ierr := v.checkStored(); ierr != nil {
		return ierr
	}
	key := v.rec.Object.Key
	if v.rawN != v.rec.Size {
		return &IntegrityError{Key: key, Check: "raw size", Recorded: fmt.Sprint(v.rec.Size), Computed: fmt.Sprint(v.rawN)}
	}
	if got := hex.EncodeToString(v.rawH.Sum(nil)); got != v.rec.SHA256 {
		return &IntegrityError{Key: key, Check: "raw sha256", Recorded: v.rec.SHA256, Computed: got}
	}
	if got := formatCRC(v.rawC); got != v.rec.CRC32C {
		return &IntegrityError{Key: key, Check: "raw crc32c", Recorded: v.rec.CRC32C, Computed: got}
	}
	return nil
}

func (v *verifyReader) Close() error {
	if v.closed {
		return nil
	}
	v.closed = true
	if v.dec != nil {
		_ = v.dec.Reset(nil)
		zstdDecoders.Put(v.dec)
		v.dec = nil
	}
	if v.err == nil {
		v.err = errors.New("read after close")
	}
	return v.body.Close()
}
