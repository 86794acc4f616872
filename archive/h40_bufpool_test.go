package archive

import "testing"

// Only full-size buffers are pooled, and a small request never takes one:
// a small file's buffer in a free list made the next large writer drop it
// and allocate, and a small file holding a full-size buffer made a large
// writer allocate another (measured: 2 GiB archived by two writers
// allocated 134 MB of buffers for a working set of 48 MB).
func TestH40BufPoolKeepsFullSizeOnly(t *testing.T) {
	p := bufPool{c: make(chan []byte, 2), size: 1 << 20}
	putBuf(p, make([]byte, 0, 10<<10)) // a small file's buffer
	if len(p.c) != 0 {
		t.Fatalf("a %d-byte buffer was pooled in a pool of %d-byte buffers", 10<<10, p.size)
	}
	full := make([]byte, 0, p.size)
	putBuf(p, full)
	if len(p.c) != 1 {
		t.Fatal("a full-size buffer was not pooled")
	}
	if b := getBuf(p, 4<<10); cap(b) != 4<<10 || len(p.c) != 1 {
		t.Fatalf("a 4 KiB request got a buffer of %d bytes (pool now holds %d)", cap(b), len(p.c))
	}
	if b := getBuf(p, p.size); cap(b) != p.size || &b[:1][0] != &full[:1][0] || len(p.c) != 0 {
		t.Fatalf("a full-size request did not get the pooled buffer (cap %d, pool %d)", cap(b), len(p.c))
	}
	// A request of more than half the size gets a full-size buffer, so it
	// can be pooled when given back.
	if b := getBuf(p, p.size*3/4); cap(b) != p.size {
		t.Fatalf("a %d-byte request got cap %d, want %d", p.size*3/4, cap(b), p.size)
	}
}
