package archive

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func testKey(t testing.TB, b byte) *Key {
	t.Helper()
	k, err := ParseCryptKey(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func encryptBytes(t testing.TB, k *Key, exp int, plain []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := newEncryptWriter(&out, k, exp)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes cross chunk boundaries in every way.
	for p := plain; len(p) > 0; {
		n := min(len(p), 1+len(p)%7919)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decryptBytes(k *Key, sealed []byte) ([]byte, error) {
	r, err := newDecryptReader(bytes.NewReader(sealed), k)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestCryptRoundTrip(t *testing.T) {
	k := testKey(t, 7)
	const exp = 12 // 4 KiB chunks
	c := 1 << exp
	for _, n := range []int{0, 1, c - 1, c, c + 1, 2 * c, 3*c + 17, 100000} {
		plain := randBytes(uint64(n), n)
		sealed := encryptBytes(t, k, exp, plain)
		if int64(len(sealed)) != encryptedSize(int64(n), exp) {
			t.Errorf("n=%d: sealed %d bytes, encryptedSize says %d", n, len(sealed), encryptedSize(int64(n), exp))
		}
		got, err := decryptBytes(k, sealed)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("n=%d: round trip: %v", n, err)
		}
		// Two encryptions of the same data differ (random salt and nonce).
		if again := encryptBytes(t, k, exp, plain); bytes.Equal(again, sealed) {
			t.Errorf("n=%d: deterministic ciphertext", n)
		}
	}
}

func TestCryptTamper(t *testing.T) {
	k := testKey(t, 7)
	const exp = 12
	c := 1 << exp
	plain := randBytes(9, 3*c) // exactly 3 full chunks: the last is full-size
	sealed := encryptBytes(t, k, exp, plain)
	chunk := c + cryptTagSize
	cases := map[string]func([]byte) []byte{
		"flip header salt":     func(p []byte) []byte { p[30] ^= 1; return p },
		"flip reserved":        func(p []byte) []byte { p[10] = 1; return p },
		"flip chunk size":      func(p []byte) []byte { p[9] = 13; return p },
		"bad magic":            func(p []byte) []byte { p[0] = 'X'; return p },
		"bad version":          func(p []byte) []byte { p[8] = 2; return p },
		"flip ciphertext":      func(p []byte) []byte { p[cryptHeaderSize+chunk+5] ^= 0x80; return p },
		"flip last tag":        func(p []byte) []byte { p[len(p)-1] ^= 1; return p },
		"truncate at boundary": func(p []byte) []byte { return p[:cryptHeaderSize+2*chunk] },
		"truncate mid chunk":   func(p []byte) []byte { return p[:cryptHeaderSize+2*chunk+100] },
		"truncate to header":   func(p []byte) []byte { return p[:cryptHeaderSize] },
		"truncate in header":   func(p []byte) []byte { return p[:20] },
		"drop middle chunk": func(p []byte) []byte {
			return append(append([]byte{}, p[:cryptHeaderSize+chunk]...), p[cryptHeaderSize+2*chunk:]...)
		},
		"swap chunks": func(p []byte) []byte {
			q := append([]byte{}, p...)
			a, b := q[cryptHeaderSize:cryptHeaderSize+chunk], q[cryptHeaderSize+chunk:cryptHeaderSize+2*chunk]
			tmp := append([]byte{}, a...)
			copy(a, b)
			copy(b, tmp)
			return q
		},
		"append garbage":    func(p []byte) []byte { return append(p, 0) },
		"append full chunk": func(p []byte) []byte { return append(p, p[cryptHeaderSize:cryptHeaderSize+chunk]...) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			bad := mutate(append([]byte{}, sealed...))
			_, err := decryptBytes(k, bad)
			var de *errDecrypt
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a decrypt (corruption) error", err)
			}
		})
	}
	// The wrong key is recognised from the header.
	_, err := decryptBytes(testKey(t, 8), sealed)
	if err == nil || !strings.Contains(err.Error(), "names key") {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestParseCryptKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, KeySize)
	want := testKey(t, 0xab).ID()
	for name, in := range map[string][]byte{
		"raw":       raw,
		"hex":       []byte(hex.EncodeToString(raw) + "\n"),
		"base64":    []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(raw)),
	} {
		k, err := ParseCryptKey(in)
		if err != nil || k.ID() != want {
			t.Errorf("%s: %v %v", name, k, err)
		}
	}
	for name, in := range map[string][]byte{
		"short":   raw[:31],
		"hex bad": []byte(strings.Repeat("zz", 32)),
		"b64 len": []byte(base64.StdEncoding.EncodeToString(raw[:16])),
		"empty":   nil,
	} {
		if _, err := ParseCryptKey(in); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if len(want) != 16 || strings.Contains(testKey(t, 0xab).String(), "abab") {
		t.Errorf("id %q / String %q", want, testKey(t, 0xab).String())
	}
}

func FuzzDecrypt(f *testing.F) {
	k := testKey(f, 1)
	f.Add(encryptBytes(f, k, 12, []byte("hello")))
	f.Add(encryptBytes(f, k, 12, randBytes(1, 5000)))
	f.Add([]byte(cryptMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decryptBytes(k, data)
		if err == nil && len(got) > len(data) {
			t.Fatalf("decrypted %d bytes from %d", len(got), len(data))
		}
	})
}
