package uploader

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// OpenOptions carry store settings that do not fit in a URL.
type OpenOptions struct {
	// S3 configures s3:// stores; its Bucket comes from the URL.
	S3 S3Options
}

// Open opens a store named by URL: "file:///abs/dir" (Local) or
// "s3://bucket" (S3, with opts.S3). The object prefix is not part of the
// store: split it off with SplitURL and give it to NewLayout.
func Open(ctx context.Context, rawURL string, opts OpenOptions) (Bucket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := parseStoreURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		if u.Path != "/" && strings.HasSuffix(u.Path, "/") {
			u.Path = strings.TrimSuffix(u.Path, "/")
		}
		return NewLocal(filepath.FromSlash(u.Path))
	case "s3":
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("store %q: a path after the bucket is a prefix: configure it as the prefix (SplitURL)", rawURL)
		}
		o := opts.S3
		if o.Bucket != "" && o.Bucket != u.Host {
			return nil, fmt.Errorf("store %q: bucket %q in options differs from the URL", rawURL, o.Bucket)
		}
		o.Bucket = u.Host
		return NewS3(o)
	}
	return nil, fmt.Errorf("store %q: unsupported scheme %q (want file:///abs/dir or s3://bucket)", rawURL, u.Scheme)
}

func parseStoreURL(rawURL string) (*url.URL, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("store URL is empty (want file:///abs/dir or s3://bucket)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store %q: %w", rawURL, err)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("store %q: query, fragment, user info or opaque URL not allowed", rawURL)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store %q: file URLs take an absolute path, file:///abs/dir (got host %q)", rawURL, u.Host)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("store %q: path must be absolute (file:///abs/dir)", rawURL)
		}
		if filepath.Clean(u.Path) != strings.TrimSuffix(u.Path, "/") && u.Path != "/" {
			return nil, fmt.Errorf("store %q: path must be clean (no ., .. or //)", rawURL)
		}
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("store %q: missing bucket (s3://bucket)", rawURL)
		}
		if strings.Contains(u.Host, ":") || u.Host != strings.ToLower(u.Host) || len(u.Host) < 3 || len(u.Host) > 63 {
			return nil, fmt.Errorf("store %q: %q is not a valid bucket name", rawURL, u.Host)
		}
	case "":
		return nil, fmt.Errorf("store %q: missing scheme (want file:///abs/dir or s3://bucket)", rawURL)
	}
	return u, nil
}

// SplitURL separates a store URL from an object prefix:
// "s3://bucket/some/prefix" → ("s3://bucket", "some/prefix/"). File URLs
// have no prefix (the directory is the store).
func SplitURL(rawURL string) (store, prefix string, err error) {
	u, err := parseStoreURL(rawURL)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "s3" {
		return rawURL, "", nil
	}
	p := strings.Trim(u.Path, "/")
	if p != "" {
		p += "/"
	}
	return "s3://" + u.Host, p, nil
}
