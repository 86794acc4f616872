package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/uploader"
)

// s3Options maps the store flags to uploader.S3Options.
func s3Options(c *cli.Context) (uploader.S3Options, error) {
	o := uploader.S3Options{
		Endpoint: c.String("s3-endpoint"), Region: c.String("s3-region"),
		DisableTLS: c.Bool("s3-insecure"), CAFile: c.String("s3-ca-file"), PathStyle: c.Bool("s3-path-style"),
		AccessKey: c.String("s3-access-key"), SecretKey: c.String("s3-secret-key"),
		StorageClass: c.String("s3-storage-class"), SSEKMSKeyID: c.String("s3-sse-kms-key-id"), SSECKeyFile: c.String("s3-sse-c-key-file"),
		RetentionMode: strings.ToUpper(c.String("s3-object-lock-mode")), RetentionDays: c.Int("s3-object-lock-days"),
	}
	if err := checkEndpointTLS(o); err != nil {
		return o, err
	}
	switch c.String("s3-sse") {
	case "", "none":
	case "s3":
		o.SSE = "SSE-S3"
	case "kms":
		o.SSE = "SSE-KMS"
	case "c":
		o.SSE = "SSE-C"
	default:
		return o, usageErr("--s3-sse %q: want none, s3, kms or c", c.String("s3-sse"))
	}
	return o, nil
}

// checkEndpointTLS refuses an --s3-endpoint scheme that contradicts the TLS
// options: plain HTTP only when asked for with --s3-insecure, never by the
// scheme alone.
func checkEndpointTLS(o uploader.S3Options) error {
	scheme, _, hasScheme := strings.Cut(o.Endpoint, "://")
	if !hasScheme {
		scheme = ""
	}
	switch strings.ToLower(scheme) {
	case "http":
		if !o.DisableTLS {
			return usageErr("--s3-endpoint %s is plain HTTP (no TLS): add --s3-insecure if that is intended, or use https:// (with --s3-ca-file for a private CA)", o.Endpoint)
		}
	case "https":
		if o.DisableTLS {
			return usageErr("--s3-endpoint %s asks for TLS but --s3-insecure asks for plain HTTP: drop one of them", o.Endpoint)
		}
	}
	if o.DisableTLS && o.CAFile != "" {
		return usageErr("--s3-ca-file %s is for TLS but --s3-insecure asks for plain HTTP: drop one of them", o.CAFile)
	}
	return nil
}

// openBucket opens the store URL with retries and the upload limit.
func openBucket(ctx context.Context, c *cli.Context, raw string) (uploader.Bucket, string, error) {
	store, prefix, err := uploader.SplitURL(raw)
	if err != nil {
		return nil, "", usageErr("--bucket: %v", err)
	}
	var opts uploader.OpenOptions
	if strings.HasPrefix(store, "s3://") {
		if opts.S3, err = s3Options(c); err != nil {
			return nil, "", err
		}
		if err := opts.S3.Validate(); err != nil {
			return nil, "", usageErr("%v", err)
		}
	}
	b, err := uploader.Open(ctx, store, opts)
	if err != nil {
		return nil, "", usageErr("--bucket: %v", err)
	}
	b = uploader.WithRetry(b, uploader.RetryPolicy{})
	if n := c.Int64("upload-bandwidth"); n > 0 {
		b = uploader.WithRateLimit(b, n)
	}
	return b, prefix, nil
}

var _ = fmt.Sprint
