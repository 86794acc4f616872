package main

import (
	"path/filepath"
	"testing"
)

// BenchmarkOnePassFloor is the one-pass floor (read + CRC-32C + SHA-256 +
// zstd fastest per 4 MiB chunk, one goroutine) over the 1 MiB brokersim
// segments' files, beside the read + CRC-32C floor of the same files.
func BenchmarkOnePassFloor(b *testing.B) {
	_, files, _ := smallLogDir(b, 2)
	var paths []string
	var size int64
	for _, f := range files {
		if filepath.Ext(f.path) == ".log" {
			paths = append(paths, f.path)
			size += f.size
		}
	}
	b.Run("onepass", func(b *testing.B) {
		fl, err := newOnePassFloor()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		for b.Loop() {
			if _, err := fl.files(paths, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read+crc32c", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for _, p := range paths {
				if _, err := floorRead(p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
