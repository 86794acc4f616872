package brokersim

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// writeAtomic writes a checkpoint-style file the way Kafka's CheckpointFile
// and PartitionMetadataFile do: <name>.tmp, (fsync), rename over the target,
// (fsync the directory).
func writeAtomic(path string, data []byte, sync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	if sync {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return errors.Join(d.Sync(), d.Close())
}

// kafkaUUID returns a random Kafka Uuid string (Uuid.randomUuid): a version 4
// UUID in URL-safe base64 without padding, never the reserved zero/metadata
// ids and never starting with '-' (Kafka re-rolls those: they look like
// command-line flags).
func kafkaUUID(r *rand.Rand) string {
	for {
		b := javaUUID(r)
		s := base64.RawURLEncoding.EncodeToString(b[:])
		if s[0] != '-' {
			return s
		}
	}
}

// javaUUID returns the bytes of a random version 4, IETF variant UUID, as
// java.util.UUID.randomUUID makes (which is also never zero or one).
func javaUUID(r *rand.Rand) [16]byte {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

// deleteDirSuffixID is the unique part of a `-delete` dir name: a random
// java UUID without dashes (LocalLog.logDeleteDirName).
func deleteDirSuffixID(r *rand.Rand) string {
	b := javaUUID(r)
	return hex.EncodeToString(b[:])
}
