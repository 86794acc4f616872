package uploader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Local is a store in a local directory: the embedded default archive
// (file:///abs/dir), also used by tests. Keys map to files below the root,
// '/' separating directories.
//
// Create is crash-safe and create-only: the data goes to a temp file in the
// target directory, is fsynced and closed, then hard-linked to its final
// name (link(2) fails with EEXIST instead of replacing, so an existing object
// is never touched; where hard links are unsupported, renameat2
// RENAME_NOREPLACE is used on Linux), the temp name is removed and the
// directory fsynced. Leftover temp files (a crash between write and link) are
// swept when the store is opened, once untouched for tempMaxAge: another
// process (a restore next to the running agent) may be writing the younger
// ones. Temp files are invisible to List and Get either way.
//
// Metadata (PutOptions.SHA256, CRC32C, ContentType and Metadata) is kept in
// extended attributes "user.segvault.<name>" set on the temp file before the
// link, so it appears atomically with the object and Stat is cheap. On a
// filesystem without user xattrs the object has no metadata and identical-
// content checks (CreateVerified) fall back to reading and hashing the file.
//
// A key that is a file cannot also be a directory ("a" and "a/b"): Create of
// the second fails. segvault's layout never produces that. Delete leaves
// empty directories behind (pruning them would race with a concurrent Create
// in the same directory).
type Local struct {
	root string
}

var _ Bucket = (*Local)(nil)

// tempPrefix marks in-progress files. Keys with an element starting with it
// are rejected, so a sweep can never remove an object.
const tempPrefix = ".segvault-tmp-"

// tempMaxAge: a temp file not modified for this long belongs to no live Create.
const tempMaxAge = time.Minute

// xattrPrefix namespaces metadata attributes.
const xattrPrefix = "user.segvault."

// NewLocal opens (creating if needed) a store rooted at dir, which must be
// absolute, and removes temp files left by interrupted Creates.
func NewLocal(dir string) (*Local, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("local store %q: path must be absolute", dir)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	l := &Local{root: dir}
	if err := l.sweep(); err != nil {
		return nil, fmt.Errorf("local store %s: sweep temp files: %w", dir, err)
	}
	return l, nil
}

// Root is the store's directory.
func (l *Local) Root() string { return l.root }

func (l *Local) String() string { return "file://" + l.root }

func (l *Local) sweep() error {
	return filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || time.Since(fi.ModTime()) < tempMaxAge {
			return nil // gone, or possibly still being written
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// ValidateKey reports whether key is acceptable to the local store: relative,
// '/'-separated, no empty, "." or ".." elements, no backslash or NUL, no
// element that looks like a temp file. Such a key cannot name a path outside
// the root.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("invalid key %q: empty", key)
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("invalid key %q: absolute", key)
	}
	if strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("invalid key %q: backslash or NUL", key)
	}
	for _, el := range strings.Split(key, "/") {
		switch {
		case el == "":
			return fmt.Errorf("invalid key %q: empty path element", key)
		case el == "." || el == "..":
			return fmt.Errorf("invalid key %q: %q element", key, el)
		case strings.HasPrefix(el, tempPrefix):
			return fmt.Errorf("invalid key %q: reserved prefix %q", key, tempPrefix)
		}
	}
	return nil
}

func (l *Local) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Create implements BucketWriter.
func (l *Local) Create(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (err error) {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("create %s: %w", key, ErrExists)
	}
	dir := filepath.Dir(p)
	if err := l.mkdirAll(dir); err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	defer func() {
		if f != nil {
			err = errors.Join(err, f.Close())
		}
		if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("create %s: remove temp: %w", key, rmErr)
		}
	}()
	var src io.Reader = &CtxReader{Ctx: ctx, R: r}
	if size >= 0 {
		src = io.LimitReader(src, size)
	}
	n, err := io.Copy(f, src)
	if err != nil {
		return fmt.Errorf("create %s: write: %w", key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("create %s: read %d bytes, expected %d: %w", key, n, size, io.ErrUnexpectedEOF)
	}
	if err := setXattrs(f, localMetadata(opts)); err != nil {
		return fmt.Errorf("create %s: metadata: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("create %s: fsync: %w", key, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("create %s: close: %w", key, cerr)
	}
	if err := linkNoReplace(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", key, ErrExists)
		}
		return fmt.Errorf("create %s: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("create %s: fsync dir: %w", key, err)
	}
	return nil
}

// linkNoReplace makes newpath name oldpath's file, failing with an error
// wrapping fs.ErrExist if newpath exists. oldpath is left (the caller
// removes it) when hard links work; it is renamed away otherwise.
func linkNoReplace(oldpath, newpath string) error {
	err := os.Link(oldpath, newpath)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	var le *os.LinkError
	if errors.As(err, &le) && (errors.Is(le.Err, syscall.EPERM) || errors.Is(le.Err, syscall.ENOTSUP) ||
		errors.Is(le.Err, syscall.EOPNOTSUPP) || errors.Is(le.Err, syscall.EMLINK)) {
		return renameNoReplace(oldpath, newpath)
	}
	return err
}

// mkdirAll creates dir and fsyncs the parent of every directory it creates,
// so a new object's path survives a crash.
func (l *Local) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if dir == l.root || len(dir) < len(l.root) {
		return os.MkdirAll(dir, 0o750)
	}
	if err := l.mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func localMetadata(opts PutOptions) map[string]string {
	md := make(map[string]string, len(opts.Metadata)+3)
	for k, v := range opts.Metadata {
		md[strings.ToLower(k)] = v
	}
	if opts.SHA256 != "" {
		md[MetaSHA256] = opts.SHA256
	}
	if opts.CRC32C != "" {
		md[MetaCRC32C] = opts.CRC32C
	}
	if opts.ContentType != "" {
		md["content-type"] = opts.ContentType
	}
	return md
}

// Get implements BucketReader.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, ObjectInfo{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, ObjectInfo{}, l.mapErr("get", key, err)
	}
	info, err := l.info(key, p, f)
	if err != nil {
		f.Close()
		return nil, ObjectInfo{}, err
	}
	return f, info, nil
}

// Stat implements BucketReader.
func (l *Local) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	return l.info(key, p, nil)
}

func (l *Local) info(key, p string, f *os.File) (ObjectInfo, error) {
	var fi os.FileInfo
	var err error
	if f != nil {
		fi, err = f.Stat()
	} else {
		fi, err = os.Stat(p)
	}
	if err != nil {
		return ObjectInfo{}, l.mapErr("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	md, err := getXattrs(p)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: metadata: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), Metadata: md, ETag: localETag(fi)}, nil
}

func (l *Local) mapErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// Delete implements BucketWriter.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: fsync dir: %w", key, err)
	}
	return nil
}

// List implements BucketReader. Directories are read one at a time and their
// entries sorted as keys sort (a directory "a" as "a/"), so keys come out in
// byte-wise lexical order, as from S3. ObjectInfo.Metadata is not filled.
func (l *Local) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "\\\x00") {
		return fmt.Errorf("list %q: invalid prefix", prefix)
	}
	// Start from the deepest directory every matching key lies in.
	dirKey := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dirKey = prefix[:i+1]
		if err := ValidateKey(strings.TrimSuffix(dirKey, "/")); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	return l.walk(ctx, dirKey, prefix, fn)
}

func (l *Local) walk(ctx context.Context, dirKey, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(l.root, filepath.FromSlash(dirKey))
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // nothing below a directory that does not exist (any more)
		}
		return fmt.Errorf("list %s: %w", dirKey, err)
	}
	type item struct {
		sortKey string
		e       fs.DirEntry
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) {
			continue
		}
		k := dirKey + name
		if e.IsDir() {
			k += "/"
		}
		// Skip entries that cannot contain a match.
		if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
			continue
		}
		items = append(items, item{k, e})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].sortKey < items[j].sortKey })
	for _, it := range items {
		if it.e.IsDir() {
			if err := l.walk(ctx, it.sortKey, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !it.e.Type().IsRegular() || !strings.HasPrefix(it.sortKey, prefix) {
			continue
		}
		fi, err := it.e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("list %s: %w", it.sortKey, err)
		}
		if err := fn(ObjectInfo{Key: it.sortKey, Size: fi.Size(), ModTime: fi.ModTime(), ETag: localETag(fi)}); err != nil {
			return err
		}
	}
	return nil
}

// CtxReader stops a long copy when Ctx is cancelled.
type CtxReader struct {
	Ctx context.Context
	R   io.Reader
}

func (c *CtxReader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}

var (
	_ StreamCreator = (*Local)(nil)
	_ RangeGetter   = (*Local)(nil)
)

// CreateStream implements StreamCreator: each part goes to its own temp
// file in the object's directory (its CRC-32C checked, as S3 checks it),
// Complete concatenates them into one more temp file, fsyncs it and links
// it to the key without replacing (ErrExists), like Create. Temp files are
// invisible and swept like Create's.
func (l *Local) CreateStream(ctx context.Context, key string, opts PutOptions) (ObjectStream, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := filepath.Dir(p)
	if err := l.mkdirAll(dir); err != nil {
		return nil, fmt.Errorf("create %s: %w", key, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	return &localStream{key: key, path: p, dir: dir, base: filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:])),
		opts: opts, parts: map[int]string{}}, nil
}

type localStream struct {
	key, path, dir, base string
	opts                 PutOptions
	mu                   sync.Mutex
	parts                map[int]string // part number -> temp file
	done                 bool
}

func (s *localStream) WritePart(ctx context.Context, n int, data []byte, crc32c string) (err error) {
	if n < 1 {
		return fmt.Errorf("create %s: part %d out of range", s.key, n)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if got := formatCRC(crc32.Checksum(data, castagnoli)); got != crc32c {
		return fmt.Errorf("create %s: part %d: crc32c %s, the caller sent %s: %w", s.key, n, got, crc32c, ErrIntegrity)
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return fmt.Errorf("create %s: part %d after Complete or Abort", s.key, n)
	}
	if _, dup := s.parts[n]; dup {
		s.mu.Unlock()
		return fmt.Errorf("create %s: part %d written twice", s.key, n)
	}
	name := fmt.Sprintf("%s.%d", s.base, n)
	s.parts[n] = name
	s.mu.Unlock()
	defer func() {
		if err != nil {
			os.Remove(name)
			s.mu.Lock()
			delete(s.parts, n)
			s.mu.Unlock()
		}
	}()
	if err := os.WriteFile(name, data, 0o640); err != nil {
		return fmt.Errorf("create %s: part %d: %w", s.key, n, err)
	}
	s.mu.Lock()
	aborted := s.parts == nil // Abort ran while the part was written
	s.mu.Unlock()
	if aborted {
		os.Remove(name)
		return fmt.Errorf("create %s: part %d: stream aborted", s.key, n)
	}
	return nil
}

func (s *localStream) cleanup() {
	for _, name := range s.parts {
		os.Remove(name)
	}
	s.parts = nil
}

func (s *localStream) Complete(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("create %s: Complete after Complete or Abort", s.key)
	}
	s.done = true
	defer s.cleanup()
	if len(s.parts) == 0 {
		return fmt.Errorf("create %s: no parts", s.key)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Lstat(s.path); err == nil {
		return fmt.Errorf("create %s: %w", s.key, ErrExists)
	}
	tmp := s.base
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create %s: %w", s.key, err)
	}
	defer func() {
		if f != nil {
			err = errors.Join(err, f.Close())
		}
		if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("create %s: remove temp: %w", s.key, rmErr)
		}
	}()
	for i := 1; i <= len(s.parts); i++ {
		name, ok := s.parts[i]
		if !ok {
			return fmt.Errorf("create %s: part %d missing", s.key, i)
		}
		pf, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("create %s: part %d: %w", s.key, i, err)
		}
		_, err = io.Copy(f, &CtxReader{Ctx: ctx, R: pf})
		pf.Close()
		if err != nil {
			return fmt.Errorf("create %s: part %d: %w", s.key, i, err)
		}
	}
	if err := setXattrs(f, localMetadata(s.opts)); err != nil {
		return fmt.Errorf("create %s: metadata: %w", s.key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("create %s: fsync: %w", s.key, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("create %s: close: %w", s.key, cerr)
	}
	if err := linkNoReplace(tmp, s.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", s.key, ErrExists)
		}
		return fmt.Errorf("create %s: %w", s.key, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("create %s: fsync dir: %w", s.key, err)
	}
	return nil
}

func (s *localStream) Abort(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	s.cleanup()
	return nil
}

// GetRange implements RangeGetter with positioned reads of the object file.
func (l *Local) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("get %s: bad range %d+%d", key, off, n)
	}
	rc, info, err := l.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if off+n > info.Size {
		rc.Close()
		return nil, fmt.Errorf("get %s: range %d+%d, object has %d bytes: %w", key, off, n, info.Size, ErrRangeEnd)
	}
	f := rc.(*os.File)
	return struct {
		io.Reader
		io.Closer
	}{&CtxReader{Ctx: ctx, R: io.NewSectionReader(f, off, n)}, f}, nil
}
