//go:build !linux

package fsutil

import (
	"errors"
	"os"
)

var errInvalid = errors.New("O_DIRECT is not used on this system")

func openDirect(string, os.FileMode) (*os.File, error) { return nil, errInvalid }

func clearDirect(*os.File) error { return nil }
