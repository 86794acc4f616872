package index

import (
	"bytes"
	"testing"
)

func TestEmptySnapshotMatchesKafka(t *testing.T) {
	// The 10-byte empty snapshot Kafka writes (kafka-format.md §8, seen in dozens of fixtures).
	want := []byte{0x00, 0x01, 0x48, 0x67, 0x4b, 0xc7, 0x00, 0x00, 0x00, 0x00}
	if got := EncodeProducerSnapshot(nil); !bytes.Equal(got, want) {
		t.Fatalf("empty snapshot = % x, want % x", got, want)
	}
	if _, err := DecodeProducerSnapshot("x.snapshot", want); err != nil {
		t.Fatal(err)
	}
}
