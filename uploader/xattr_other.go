//go:build !linux

package uploader

import (
	"errors"
	"os"
)

// Outside Linux local objects carry no metadata (identical-content checks
// hash the file) and there is no no-replace rename fallback.

func setXattrs(*os.File, map[string]string) error { return nil }

func getXattrs(string) (map[string]string, error) { return nil, nil }

func renameNoReplace(oldpath, newpath string) error {
	return &os.LinkError{Op: "link", Old: oldpath, New: newpath, Err: errors.ErrUnsupported}
}
