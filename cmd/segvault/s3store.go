package main

import (
	"context"
	"net/url"

	"github.com/urfave/cli/v2"

	"github.com/segvault/segvault/uploader"
)

// openS3 opens an S3 bucket from the store flags.
func openS3(ctx context.Context, c *cli.Context, u *url.URL) (uploader.Bucket, error) {
	return nil, usageErr("s3 store not wired yet")
}

// wrapStore adds retries and the upload bandwidth limit.
func wrapStore(b uploader.Bucket, c *cli.Context) uploader.Bucket { return b }
