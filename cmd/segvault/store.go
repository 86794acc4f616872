package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/uploader"
)

func env(name string) []string {
	return []string{"SEGVAULT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// storeFlags are the options of every command that talks to the archive.
func storeFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "bucket", Usage: "archive location: file:///path (local directory, the embedded default) or s3://bucket", EnvVars: env("bucket")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "prefix", Usage: "key prefix inside the bucket, joined after a prefix given in the URL (s3://bucket/a with --prefix b: a/b/)", EnvVars: env("prefix")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-endpoint", Value: "s3.amazonaws.com", Usage: "S3 endpoint host[:port]", EnvVars: env("s3-endpoint")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-region", Usage: "S3 region (empty: discovered)", EnvVars: env("s3-region")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-access-key", Usage: "S3 access key (empty: AWS_*/MINIO_* environment, shared credentials file, instance or web-identity role)", EnvVars: env("s3-access-key")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-secret-key", Usage: "S3 secret key (secret: prefer the environment or an EnvironmentFile)", EnvVars: env("s3-secret-key")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "s3-insecure", Usage: "plain HTTP to the endpoint (no TLS)", EnvVars: env("s3-insecure")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-ca-file", Usage: "PEM file of CA certificates to trust for the endpoint (verification stays on)", EnvVars: env("s3-ca-file")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "s3-path-style", Usage: "path-style addressing (most on-premises S3 servers)", EnvVars: env("s3-path-style")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-storage-class", Usage: "storage class of uploaded objects", EnvVars: env("s3-storage-class")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-sse", Usage: "server-side encryption: none, s3, kms or c", Value: "none", EnvVars: env("s3-sse")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-sse-kms-key-id", Usage: "KMS key id for --s3-sse=kms", EnvVars: env("s3-sse-kms-key-id")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-sse-c-key-file", Usage: "file holding the 32-byte customer key for --s3-sse=c", EnvVars: env("s3-sse-c-key-file")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-object-lock-mode", Usage: "object-lock retention mode: governance or compliance (empty: none)", EnvVars: env("s3-object-lock-mode")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "s3-object-lock-days", Usage: "object-lock retention in days", EnvVars: env("s3-object-lock-days")}),
		altsrc.NewInt64Flag(&cli.Int64Flag{Name: "upload-bandwidth", Usage: "upload limit in bytes per second (0: none)", EnvVars: env("upload-bandwidth")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "encryption-key-file", Usage: "client-side encryption key file (32 bytes raw, hex or base64): the store never sees plaintext", EnvVars: env("encryption-key-file")}),
	}
}

// secretFlags are redacted by `config check`.
var secretFlags = map[string]bool{"s3-secret-key": true}

// openStore opens the archive the store flags describe, with retries and
// the upload bandwidth limit applied, and the one Layout every command
// (agent, ls, restore, verify --scrub) addresses it with (archiveLayout).
func openStore(ctx context.Context, c *cli.Context) (uploader.Bucket, archive.Layout, error) {
	raw, err := bucketURL(c)
	if err != nil {
		return nil, archive.Layout{}, err
	}
	layout, err := archiveLayout(c)
	if err != nil {
		return nil, archive.Layout{}, err
	}
	b, _, err := openBucket(ctx, c, raw)
	if err != nil {
		return nil, archive.Layout{}, err
	}
	return b, layout, nil
}

// openExistingStore is openStore for the commands that read an archive
// (ls, restore, verify --scrub): opening a local store creates its
// directory, so a mistyped file:// path would read a new, empty archive and
// report "nothing there" as if that were the truth. It must exist.
func openExistingStore(ctx context.Context, c *cli.Context) (uploader.Bucket, archive.Layout, error) {
	raw, err := bucketURL(c)
	if err != nil {
		return nil, archive.Layout{}, err
	}
	if store, _, err := uploader.SplitURL(raw); err == nil && strings.HasPrefix(store, "file://") {
		dir := strings.TrimPrefix(store, "file://")
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, archive.Layout{}, usageErr("--bucket %s: no archive there (%s is not an existing directory)", raw, dir)
		}
	}
	return openStore(ctx, c)
}

// bucketURL is --bucket, a file URL made absolute.
func bucketURL(c *cli.Context) (string, error) {
	raw := c.String("bucket")
	if raw == "" {
		return "", usageErr("--bucket is required (file:///path or s3://bucket)")
	}
	if strings.HasPrefix(raw, "file://") {
		if p := strings.TrimPrefix(raw, "file://"); p != "" && !strings.HasPrefix(p, "/") {
			return "", usageErr("--bucket %q: a file URL needs an absolute path (file:///path)", raw)
		}
		if p, err := filepath.Abs(strings.TrimPrefix(raw, "file://")); err == nil {
			raw = "file://" + p
		}
	}
	return raw, nil
}

// archiveLayout is the one place the object key prefix is decided, from
// --bucket and --prefix: an s3:// URL's path (s3://bucket/a/b) comes first,
// then --prefix is joined after it (s3://bucket/a with --prefix b: "a/b/").
// A file:// URL's path is the store directory itself; --prefix then names a
// sub-tree inside it.
func archiveLayout(c *cli.Context) (archive.Layout, error) {
	raw, err := bucketURL(c)
	if err != nil {
		return archive.Layout{}, err
	}
	_, prefix, err := uploader.SplitURL(raw)
	if err != nil {
		return archive.Layout{}, usageErr("--bucket: %v", err)
	}
	if p := strings.Trim(c.String("prefix"), "/"); p != "" {
		prefix += p + "/"
	}
	// Every key starts with the prefix: an element the store refuses in a
	// key ("..", ".", empty) is a configuration error, not one failure per
	// object.
	if prefix != "" {
		for _, e := range strings.Split(strings.TrimSuffix(prefix, "/"), "/") {
			if e == "" || e == "." || e == ".." {
				return archive.Layout{}, usageErr("key prefix %q (from --bucket %s and --prefix %q): %q element not allowed", prefix, raw, c.String("prefix"), e)
			}
		}
	}
	return archive.NewLayout(prefix), nil
}

// decodeOptions carries the client-side key for reading.
func decodeOptions(c *cli.Context) (archive.DecodeOptions, error) {
	var o archive.DecodeOptions
	if p := c.String("encryption-key-file"); p != "" {
		k, err := archive.LoadKeyFile(p)
		if err != nil {
			return o, usageErr("--encryption-key-file: %v", err)
		}
		o.Keys = append(o.Keys, k)
	}
	return o, nil
}
