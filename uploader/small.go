package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ReadAll reads a small object (a manifest) whole, refusing more than max
// bytes so a hostile object cannot exhaust memory.
func ReadAll(ctx context.Context, b BucketReader, key string, max int64) ([]byte, error) {
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("read %s: larger than %d bytes", key, max)
	}
	return data, nil
}

// Exists reports whether key is in b.
func Exists(ctx context.Context, b BucketReader, key string) (bool, error) {
	_, err := b.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
