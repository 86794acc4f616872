package archive

// Client-side encryption, format "aes-256-gcm-stream-v1".
//
// An encrypted object is a 60-byte header followed by n >= 1 sealed chunks:
//
//	offset  size  field
//	0       8     magic "SEGVENC\x00"
//	8       1     version, 1
//	9       1     chunk size exponent e, 12 <= e <= 24: plaintext chunk size C = 1<<e (default 16, 64 KiB)
//	10      2     reserved, zero (readers reject anything else)
//	12      8     key id: SHA-256("segvault key id v1\x00" || K)[0:8], K the 32-byte master key
//	20      32    salt, random per object
//	52      8     nonce prefix, random per object
//	60            sealed chunk 0, sealed chunk 1, ..., sealed chunk n-1
//
// The chunk key is derived per object: Kc = HKDF-SHA256(secret K, salt,
// info "segvault aes-256-gcm-stream-v1", 32 bytes), so nonces never repeat
// under a key whatever the number of objects. The plaintext P (the bytes after
// compression) is cut into chunks P_0..P_{n-1}: every chunk but the last holds
// exactly C bytes, the last holds 1..C bytes, or 0 bytes only when P is empty
// (then n = 1). Chunk i is sealed with AES-256-GCM:
//
//	nonce_i  = nonce prefix (8 bytes) || uint32 big-endian i (4 bytes)
//	aad_i    = header (all 60 bytes) || flag, flag = 0x01 for i = n-1, else 0x00
//	sealed_i = GCM-Seal(Kc, nonce_i, P_i, aad_i) = ciphertext (len(P_i) bytes) || 16-byte tag
//
// so an object is 60 + len(P) + 16*n bytes, and n <= 2^32. The header is
// authenticated by every chunk; reordering, dropping or duplicating chunks
// changes a nonce; cutting the object at a chunk boundary leaves a last chunk
// sealed with flag 0x00, so truncation fails authentication like any other
// change. A reader reads C+16 bytes at a time: a shorter read (at least 16
// bytes) or a full one followed by end of stream is the final chunk; bytes
// after a final chunk are an error.
//
// The key id lets a reader pick the key and is recorded in
// StoredObject.KeyID as 16 lower-case hex digits (the same 8 bytes).
//
// To change the format, write "aes-256-gcm-stream-v2" with a new version byte
// and keep this reader.

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/segvault/segvault/uploader"
)

// EncryptionAESGCMStream names the client-side encryption format above.
const EncryptionAESGCMStream = "aes-256-gcm-stream-v1"

const (
	cryptMagic        = "SEGVENC\x00"
	cryptVersion      = 1
	cryptHeaderSize   = 60
	cryptTagSize      = 16
	cryptKeyIDSize    = 8
	cryptSaltSize     = 32
	cryptPrefixSize   = 8
	cryptMinExp       = 12
	cryptMaxExp       = 24
	cryptDefaultExp   = 16
	cryptHKDFInfo     = "segvault aes-256-gcm-stream-v1"
	cryptKeyIDContext = "segvault key id v1\x00"
	cryptFlagMore     = 0x00
	cryptFlagFinal    = 0x01
	// KeySize is the size of a client-side master key.
	KeySize = uploader.KeySize
)

// Key is a client-side master key. Its String never shows the material.
type Key struct {
	raw [KeySize]byte
	id  [cryptKeyIDSize]byte
}

// ParseCryptKey reads a key: exactly 32 raw bytes, or (surrounding whitespace
// trimmed) 64 hex digits, or standard/URL base64 of 32 bytes.
func ParseCryptKey(data []byte) (*Key, error) {
	raw, err := uploader.ParseKeyMaterial(data)
	if err != nil {
		return nil, err
	}
	return newKey(raw), nil
}

// LoadKeyFile reads a key file (see ParseCryptKey).
func LoadKeyFile(path string) (*Key, error) {
	raw, err := uploader.LoadKeyMaterial(path)
	if err != nil {
		return nil, err
	}
	return newKey(raw), nil
}

func newKey(raw [KeySize]byte) *Key {
	k := &Key{raw: raw}
	h := sha256.New()
	h.Write([]byte(cryptKeyIDContext))
	h.Write(k.raw[:])
	copy(k.id[:], h.Sum(nil))
	return k
}

// ID is the key's fingerprint, 16 hex digits, as recorded in StoredObject.KeyID.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

func (k *Key) String() string { return "key " + k.ID() }

func (k *Key) aead(salt []byte) (cipher.AEAD, error) {
	sub, err := hkdf.Key(sha256.New, k.raw[:], salt, cryptHKDFInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// encryptWriter seals what is written to it and writes the object to w.
// Close seals the final chunk; it does not close w.
type encryptWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	header [cryptHeaderSize]byte
	aad    [cryptHeaderSize + 1]byte
	nonce  [12]byte
	buf    []byte // plaintext of the pending chunk, cap C
	out    []byte // sealed chunk, cap C+16
	chunk  uint64
	err    error
}

func newEncryptWriter(w io.Writer, k *Key, exp int) (*encryptWriter, error) {
	if exp == 0 {
		exp = cryptDefaultExp
	}
	if exp < cryptMinExp || exp > cryptMaxExp {
		return nil, fmt.Errorf("encryption chunk size 2^%d outside 2^%d..2^%d", exp, cryptMinExp, cryptMaxExp)
	}
	e := &encryptWriter{w: w}
	h := e.header[:]
	copy(h[0:8], cryptMagic)
	h[8] = cryptVersion
	h[9] = byte(exp)
	copy(h[12:20], k.id[:])
	if _, err := rand.Read(h[20:60]); err != nil { // salt and nonce prefix
		return nil, fmt.Errorf("encrypt: random: %w", err)
	}
	aead, err := k.aead(h[20:52])
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	e.aead = aead
	copy(e.aad[:], h)
	copy(e.nonce[:8], h[52:60])
	c := 1 << exp
	e.buf = make([]byte, 0, c)
	e.out = make([]byte, 0, c+cryptTagSize)
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *encryptWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n := 0
	for len(p) > 0 {
		if len(e.buf) == cap(e.buf) { // more data follows a full chunk: it is not the last
			if err := e.seal(cryptFlagMore); err != nil {
				return n, err
			}
		}
		m := copy(e.buf[len(e.buf):cap(e.buf)], p)
		e.buf = e.buf[:len(e.buf)+m]
		p = p[m:]
		n += m
	}
	return n, nil
}

func (e *encryptWriter) seal(flag byte) error {
	if e.chunk > math.MaxUint32 {
		e.err = errors.New("encrypt: more than 2^32 chunks")
		return e.err
	}
	binary.BigEndian.PutUint32(e.nonce[8:], uint32(e.chunk))
	e.aad[cryptHeaderSize] = flag
	e.out = e.aead.Seal(e.out[:0], e.nonce[:], e.buf, e.aad[:])
	e.chunk++
	e.buf = e.buf[:0]
	if _, err := e.w.Write(e.out); err != nil {
		e.err = err
		return err
	}
	return nil
}

// Close seals the final chunk.
func (e *encryptWriter) Close() error {
	if e.err != nil {
		return e.err
	}
	if err := e.seal(cryptFlagFinal); err != nil {
		return err
	}
	e.err = errors.New("encrypt: write after close")
	return nil
}

// encryptedSize is the stored size of plain bytes of plaintext.
func encryptedSize(plain int64, exp int) int64 {
	c := int64(1) << exp
	n := (plain + c - 1) / c
	if n == 0 {
		n = 1
	}
	return cryptHeaderSize + plain + n*cryptTagSize
}

// errDecrypt marks authentication and framing failures (corruption, not
// transport); OpenVerified turns them into ErrIntegrity.
type errDecrypt struct{ msg string }

func (e *errDecrypt) Error() string { return "decrypt: " + e.msg }

// decryptReader opens an object written by encryptWriter.
type decryptReader struct {
	r      *bufio.Reader
	aead   cipher.AEAD
	aad    [cryptHeaderSize + 1]byte
	nonce  [12]byte
	in     []byte // sealed chunk buffer, C+16
	plain  []byte // decrypted, unread part of the current chunk
	chunk  uint64
	final  bool
	err    error
	chunkC int
}

// newDecryptReader reads the header from r and checks it names key k.
func newDecryptReader(r io.Reader, k *Key) (*decryptReader, error) {
	var h [cryptHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &errDecrypt{"object shorter than the encryption header"}
		}
		return nil, err
	}
	switch {
	case string(h[0:8]) != cryptMagic:
		return nil, &errDecrypt{fmt.Sprintf("bad magic %x", h[0:8])}
	case h[8] != cryptVersion:
		return nil, &errDecrypt{fmt.Sprintf("unsupported version %d (this segvault reads %d)", h[8], cryptVersion)}
	case h[9] < cryptMinExp || h[9] > cryptMaxExp:
		return nil, &errDecrypt{fmt.Sprintf("chunk size exponent %d outside %d..%d", h[9], cryptMinExp, cryptMaxExp)}
	case h[10] != 0 || h[11] != 0:
		return nil, &errDecrypt{"reserved header bytes not zero"}
	case subtle.ConstantTimeCompare(h[12:20], k.id[:]) != 1:
		return nil, &errDecrypt{fmt.Sprintf("header names key %x, expected %s", h[12:20], k.ID())}
	}
	aead, err := k.aead(h[20:52])
	if err != nil {
		return nil, err
	}
	c := 1 << h[9]
	d := &decryptReader{aead: aead, chunkC: c, in: make([]byte, c+cryptTagSize)}
	d.r = bufio.NewReaderSize(r, 64<<10)
	copy(d.aad[:], h[:])
	copy(d.nonce[:8], h[52:60])
	return d, nil
}

func (d *decryptReader) Read(p []byte) (int, error) {
	for len(d.plain) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.final {
			d.err = io.EOF
			return 0, io.EOF
		}
		d.err = d.next()
	}
	n := copy(p, d.plain)
	d.plain = d.plain[n:]
	return n, nil
}

func (d *decryptReader) next() error {
	n, err := io.ReadFull(d.r, d.in)
	final := false
	switch {
	case err == nil:
		if _, perr := d.r.Peek(1); perr == io.EOF {
			final = true
		} else if perr != nil {
			return perr
		}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if n < cryptTagSize {
			return &errDecrypt{fmt.Sprintf("truncated: chunk %d has %d bytes", d.chunk, n)}
		}
		final = true
	default:
		return err // transport
	}
	if d.chunk > math.MaxUint32 {
		return &errDecrypt{"more than 2^32 chunks"}
	}
	binary.BigEndian.PutUint32(d.nonce[8:], uint32(d.chunk))
	if final {
		d.aad[cryptHeaderSize] = cryptFlagFinal
	} else {
		d.aad[cryptHeaderSize] = cryptFlagMore
	}
	plain, oerr := d.aead.Open(d.in[:0], d.nonce[:], d.in[:n], d.aad[:])
	if oerr != nil {
		if final {
			return &errDecrypt{fmt.Sprintf("chunk %d (last, %d bytes) failed authentication (corrupt or truncated)", d.chunk, n)}
		}
		return &errDecrypt{fmt.Sprintf("chunk %d failed authentication", d.chunk)}
	}
	if final && len(plain) == 0 && d.chunk > 0 {
		return &errDecrypt{"empty final chunk after data"}
	}
	d.chunk++
	d.plain = plain
	d.final = final
	return nil
}
