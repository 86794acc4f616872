package uploader

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// setXattrs stores md as user.segvault.* attributes of f. A filesystem
// without user xattrs is not an error: the object simply has no metadata.
func setXattrs(f *os.File, md map[string]string) error {
	for k, v := range md {
		err := unix.Fsetxattr(int(f.Fd()), xattrPrefix+k, []byte(v), 0)
		if err != nil {
			if xattrUnsupported(err) {
				return nil
			}
			return &os.PathError{Op: "setxattr", Path: f.Name(), Err: err}
		}
	}
	return nil
}

// getXattrs reads the user.segvault.* attributes of path.
func getXattrs(path string) (map[string]string, error) {
	buf := make([]byte, 1024)
	var n int
	for {
		var err error
		n, err = unix.Listxattr(path, buf)
		if err == nil {
			break
		}
		if xattrUnsupported(err) {
			return nil, nil
		}
		if errors.Is(err, unix.ERANGE) && len(buf) < 1<<20 {
			buf = make([]byte, 4*len(buf))
			continue
		}
		return nil, &os.PathError{Op: "listxattr", Path: path, Err: err}
	}
	var md map[string]string
	val := make([]byte, 256)
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, xattrPrefix) {
			continue
		}
		for {
			m, err := unix.Getxattr(path, name, val)
			if errors.Is(err, unix.ERANGE) && len(val) < 1<<20 {
				val = make([]byte, 4*len(val))
				continue
			}
			if err != nil {
				if errors.Is(err, unix.ENODATA) {
					break
				}
				return nil, &os.PathError{Op: "getxattr", Path: path, Err: err}
			}
			if md == nil {
				md = make(map[string]string)
			}
			md[strings.TrimPrefix(name, xattrPrefix)] = string(val[:m])
			break
		}
	}
	return md, nil
}

func xattrUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// renameNoReplace renames oldpath to newpath unless newpath exists.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}
