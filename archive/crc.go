package archive

import (
	"fmt"
	"hash/crc32"
	"strconv"
)

// castagnoli is the package's one CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func formatCRC(c uint32) string { return fmt.Sprintf("%08x", c) }

func parseSize(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}
