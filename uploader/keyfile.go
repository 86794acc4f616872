package uploader

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
)

// KeySize is the size of key material: an SSE-C key, or the client-side
// master key archive/ derives its keys from.
const KeySize = 32

// ParseKeyMaterial reads 32 bytes of key material: exactly 32 raw bytes, or
// (surrounding whitespace trimmed) 64 hex digits, or standard/URL base64 of
// 32 bytes.
func ParseKeyMaterial(data []byte) ([KeySize]byte, error) {
	var out [KeySize]byte
	var raw []byte
	if len(data) == KeySize {
		raw = data
	} else {
		s := string(bytes.TrimSpace(data))
		switch {
		case len(s) == 2*KeySize:
			b, err := hex.DecodeString(s)
			if err != nil {
				return out, fmt.Errorf("key: 64 characters but not hex: %w", err)
			}
			raw = b
		default:
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
					raw = b
					break
				}
			}
			if raw == nil {
				return out, fmt.Errorf("key: want %d raw bytes, 64 hex digits or base64 of %d bytes", KeySize, KeySize)
			}
		}
	}
	copy(out[:], raw)
	return out, nil
}

// LoadKeyMaterial reads a key file (see ParseKeyMaterial).
func LoadKeyMaterial(path string) ([KeySize]byte, error) {
	var out [KeySize]byte
	fi, err := os.Stat(path)
	if err != nil {
		return out, fmt.Errorf("key file: %w", err)
	}
	if fi.Size() > 4096 {
		return out, fmt.Errorf("key file %s: %d bytes, too large for a key", path, fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out, fmt.Errorf("key file: %w", err)
	}
	k, err := ParseKeyMaterial(data)
	if err != nil {
		return out, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}
