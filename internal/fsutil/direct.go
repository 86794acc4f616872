package fsutil

import (
	"errors"
	"io"
	"os"
	"unsafe"
)

// directAlign is the alignment O_DIRECT needs of buffer addresses, file
// offsets and lengths: 4096 covers 512-byte and 4 KiB logical blocks.
const directAlign = 4096

// DirectBufferSize is the size of a DirectFile's write buffer.
const DirectBufferSize = 4 << 20

// DirectFile writes a new file sequentially without going through the page
// cache (O_DIRECT) where the file system allows it: restore writes
// gigabytes that the host does not need cached, and on a host whose memory
// is full of cache a buffered write spends most of its time reclaiming
// pages (measured here: 1 GiB buffered + fsync 2.6 s, almost all of it
// kernel CPU; with O_DIRECT 0.36 s). Bytes are gathered into one aligned
// buffer and written in whole aligned blocks; the tail (less than a block)
// is written through the page cache after turning O_DIRECT off for the
// descriptor. A file system that refuses O_DIRECT (at open or at the first
// write) gets ordinary buffered writes: the bytes written are the same.
// Sync makes the data and the size durable, as os.File.Sync.
type DirectFile struct {
	f      *os.File
	direct bool
	buf    []byte // aligned, cap DirectBufferSize; nil when not direct
	off    int64  // bytes written to the file before buf's first byte
	err    error
}

// CreateDirect creates (or truncates) path for writing with perm.
func CreateDirect(path string, perm os.FileMode) (*DirectFile, error) {
	if f, err := openDirect(path, perm); err == nil {
		return &DirectFile{f: f, direct: true, buf: alignedBuffer(DirectBufferSize)}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return nil, err
	}
	return &DirectFile{f: f}, nil
}

// alignedBuffer returns an empty slice of capacity n whose first byte is
// directAlign-aligned.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % directAlign); r != 0 {
		off = directAlign - r
	}
	return b[off : off : off+n]
}

// Direct reports whether the file is still being written with O_DIRECT.
func (d *DirectFile) Direct() bool { return d.direct }

// Name is the file's path.
func (d *DirectFile) Name() string { return d.f.Name() }

// Write appends p.
func (d *DirectFile) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if d.err != nil {
			return n, d.err
		}
		if !d.direct {
			k, err := d.f.Write(p)
			d.err = err
			return n + k, err
		}
		k := copy(d.buf[len(d.buf):cap(d.buf)], p)
		d.buf = d.buf[:len(d.buf)+k]
		p, n = p[k:], n+k
		if len(d.buf) == cap(d.buf) {
			if err := d.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// ReadFrom appends everything r returns until EOF, reading straight into
// the aligned buffer (io.Copy uses it).
func (d *DirectFile) ReadFrom(r io.Reader) (int64, error) {
	if d.err != nil {
		return 0, d.err
	}
	if !d.direct {
		return io.Copy(onlyWriter{d.f}, r)
	}
	var total int64
	for {
		n, err := r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+n]
		total += int64(n)
		if len(d.buf) == cap(d.buf) {
			if ferr := d.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if !d.direct { // a flush fell back to buffered writes
			n, err := io.Copy(onlyWriter{d.f}, r)
			return total + n, err
		}
	}
}

// onlyWriter hides os.File's ReadFrom (which would call back into io.Copy).
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// directWrite writes b to f (a test replaces it to refuse direct writes).
var directWrite = func(f *os.File, b []byte) (int, error) { return f.Write(b) }

// flush writes the buffer's whole aligned blocks with O_DIRECT; the rest
// (less than a block) stays buffered. When the file system refuses the
// direct write, everything buffered is written through the page cache, from
// where the buffer starts (a partial direct write before the refusal is
// overwritten), and the file continues buffered.
func (d *DirectFile) flush() error {
	n := len(d.buf) &^ (directAlign - 1)
	if n == 0 {
		return nil
	}
	if _, err := directWrite(d.f, d.buf[:n]); err != nil {
		if !errors.Is(err, errInvalid) {
			d.err = err
			return err
		}
		if err := d.fallBack(); err != nil {
			return err
		}
		if _, err := d.f.Seek(d.off, io.SeekStart); err != nil {
			d.err = err
			return err
		}
		return d.writeBuffered()
	}
	d.off += int64(n)
	rest := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:rest]
	return nil
}

// fallBack turns O_DIRECT off and continues with buffered writes at the
// current end of the file.
func (d *DirectFile) fallBack() error {
	d.direct = false
	if err := clearDirect(d.f); err != nil {
		d.err = err
		return err
	}
	return nil
}

// finish writes what is still buffered: the whole blocks with O_DIRECT,
// the tail through the page cache.
func (d *DirectFile) finish() error {
	if d.err != nil {
		return d.err
	}
	if d.direct {
		if err := d.flush(); err != nil {
			return err
		}
	}
	if len(d.buf) > 0 && d.direct {
		if err := d.fallBack(); err != nil {
			return err
		}
	}
	return d.writeBuffered()
}

// writeBuffered writes the whole buffer through the page cache (O_DIRECT
// is off) and empties it.
func (d *DirectFile) writeBuffered() error {
	if len(d.buf) == 0 {
		return nil
	}
	if _, err := d.f.Write(d.buf); err != nil {
		d.err = err
		return err
	}
	d.off += int64(len(d.buf))
	d.buf = d.buf[:0]
	return nil
}

// Sync writes what is buffered and fsyncs the file.
func (d *DirectFile) Sync() error {
	if err := d.finish(); err != nil {
		return err
	}
	return d.f.Sync()
}

// Close writes what is buffered (without fsync) and closes the file.
func (d *DirectFile) Close() error {
	err := d.finish()
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	d.buf = nil
	if err == nil {
		d.err = os.ErrClosed
	}
	return err
}
