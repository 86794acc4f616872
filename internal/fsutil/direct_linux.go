package fsutil

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// errInvalid is what a file system that cannot do O_DIRECT returns.
var errInvalid error = syscall.EINVAL

func openDirect(path string, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|unix.O_DIRECT, perm)
}

// clearDirect turns O_DIRECT off for f's descriptor (Linux allows it with
// F_SETFL).
func clearDirect(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			ferr = err
			return
		}
		_, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags&^unix.O_DIRECT)
	}); err != nil {
		return err
	}
	return ferr
}
