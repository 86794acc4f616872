// Package kafkadir holds checks on Kafka log dirs that the agent and restore
// share.
package kafkadir

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/segvault/segvault/internal/fsutil"
)

// LockFile is the lock Kafka holds on every log dir while the broker runs.
const LockFile = ".lock"

// LockHeld reports whether another process holds Kafka's lock on logDir
// (Kafka locks <logdir>/.lock with FileChannel.tryLock, a POSIX fcntl lock:
// F_GETLK sees it). A missing .lock file means no broker holds it.
func LockHeld(logDir string) (bool, error) {
	f, err := fsutil.OpenRegular(filepath.Join(logDir, LockFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != syscall.F_UNLCK, nil
}
