package archive

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/segvault/segvault/uploader"
)

// OpenFile streams one archived file back as raw bytes, verified against
// rec, whichever format stores it.
func OpenFile(ctx context.Context, b uploader.BucketReader, rec FileRecord, opts DecodeOptions) (io.ReadCloser, error) {
	if rec.IsV2() {
		return nil, fmt.Errorf("%s (%s): %w", rec.DataKey, rec.Name, errors.New("v2 reader not built yet"))
	}
	return OpenVerified(ctx, b, rec, opts)
}
