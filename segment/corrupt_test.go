package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// batchInfo is a batch's place in a file, read from the intact file.
type batchInfo struct {
	pos, size  int64
	base, last int64
	epoch      int32
	magic      int8
	codec      Codec
}

// wireIsLast: a legacy wrapper's offset field holds its last offset.
func (b batchInfo) wireIsLast() bool { return b.magic != MagicV2 && b.codec != CodecNone }

func layout(t testing.TB, data []byte, base int64) []batchInfo {
	t.Helper()
	r := NewReader(bytes.NewReader(data), int64(len(data)), "seg.log", ReaderOptions{BaseOffset: base})
	var out []batchInfo
	for r.Next() {
		b := r.Batch()
		out = append(out, batchInfo{pos: b.Pos, size: b.Size(), base: b.BaseOffset, last: b.LastOffset(),
			epoch: b.PartitionLeaderEpoch, magic: b.Magic, codec: b.Codec()})
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return out
}

// corruptionFixtures are real multi-batch segments: gzip + uncompressed with
// several leader epochs and idempotent producers; lz4 LogAppendTime;
// transactional data with a COMMIT marker; a larger compacted topic.
var corruptionFixtures = []struct {
	rel    string
	stride int
}{
	{"BiggerBrain__kafka/data/lsx1-0/00000000000000000000.log", 1},
	{"mscaldas2012__kafka-connect-spooldir/kafka-data/_confluent-controlcenter-5-1-2-1-monitoring-trigger-event-rekey-0/00000000000000000000.log", 1},
	{"ItumelengMogase__Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/_confluent-ksql-default__command_topic-0/00000000000000000000.log", 1},
	{"mscaldas2012__kafka-connect-spooldir/kafka-data/docker-connect-configs-0/00000000000000000000.log", 7},
}

// outcome is what a scan of a damaged file must report.
type outcome struct {
	clean     bool
	pos       int64 // CorruptionError.Pos when !clean
	truncated bool
	epochOnly bool // clean, and only the batch's leader epoch changed
}

// expectFlip reasons out where a damaged byte must be reported. Everything
// from the magic byte on is covered by the CRC (v2: CRC-32C from byte 21,
// with the magic and CRC fields themselves checked first; legacy: CRC-32
// from byte 16), so it fails at its own batch. The batch length (bytes 8-11)
// either runs past the file (a torn tail) or moves the CRC's range: its own
// batch again. Two fields are outside every check: the v2 partition leader
// epoch (bytes 12-15), which is harmless, and the base offset (bytes 0-7),
// caught only when it breaks order with a neighbour or the segment base. In
// legacy entries bytes 12-15 are the CRC; a v0 wrapper's offset must equal
// its last inner offset, a v1 wrapper's shifts its relative inner offsets.
func expectFlip(bs []batchInfo, i int, off int64, data, orig []byte, segBase int64) outcome {
	b := bs[i]
	switch {
	case b.magic == MagicV2 && off >= offPartitionEpoch && off < offMagic:
		return outcome{clean: true, epochOnly: true}
	case off < 8 && b.magic == MagicV0 && b.codec != CodecNone:
		// v0 inner offsets are absolute: the wrapper's must equal the last.
		return outcome{pos: b.pos}
	case off < 8:
		nb := int64(binary.BigEndian.Uint64(data[b.pos:]))
		nl := nb + (b.last - b.base)
		if b.wireIsLast() { // v1 wrapper: inner offsets are relative to it
			nb, nl = nb-(b.last-b.base), nb
		}
		switch {
		case nb < 0 || nl < nb || nb < segBase || nl-segBase > math.MaxInt32:
			return outcome{pos: b.pos}
		case i > 0 && nb <= bs[i-1].last:
			return outcome{pos: b.pos}
		case i+1 < len(bs) && bs[i+1].base <= nl:
			return outcome{pos: bs[i+1].pos}
		}
		return outcome{clean: true}
	case off < LogOverhead:
		nl := int64(int32(binary.BigEndian.Uint32(data[b.pos+8:])))
		minLen := int64(v2MinBatchLength)
		if b.magic != MagicV2 {
			minLen = int64(legacyMinSize(b.magic))
		}
		return outcome{pos: b.pos, truncated: nl >= minLen && nl+LogOverhead > int64(len(data))-b.pos}
	}
	return outcome{pos: b.pos}
}

func checkOutcome(t *testing.T, what string, data []byte, base int64, want outcome, deep bool) {
	t.Helper()
	s, err := scanBytes(data, base, deep)
	if want.clean {
		if err != nil {
			t.Fatalf("%s: want a clean scan, got %v", what, err)
		}
		return
	}
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: want a CorruptionError at %d, got %v", what, want.pos, err)
	}
	if ce.Pos != want.pos || IsTruncated(err) != want.truncated || errors.Is(err, ErrCorrupt) == want.truncated {
		t.Fatalf("%s: want error at %d (truncated %v), got %v", what, want.pos, want.truncated, err)
	}
	if s.Size != want.pos {
		t.Fatalf("%s: summary covers %d bytes, want the valid prefix %d", what, s.Size, want.pos)
	}
}

// TestCorruptionTable flips bytes of real segments and checks each is
// reported at the batch the reasoning in expectFlip names.
func TestCorruptionTable(t *testing.T) {
	for _, fx := range corruptionFixtures {
		t.Run(filepath.Base(filepath.Dir(fx.rel)), func(t *testing.T) {
			orig := readFile(t, filepath.Join(fixtureRoot, fx.rel))
			testFlips(t, orig, 0, fx.stride)
		})
	}
}

func testFlips(t *testing.T, orig []byte, base int64, stride int) {
	bs := layout(t, orig, base)
	if len(bs) < 2 {
		t.Fatalf("want a multi-batch segment, got %d batches", len(bs))
	}
	data := bytes.Clone(orig)
	stats := map[string]int{}
	for p := int64(0); p < int64(len(orig)); p += int64(stride) {
		i := 0
		for i+1 < len(bs) && bs[i+1].pos <= p {
			i++
		}
		for _, mask := range []byte{0xff, 0x01, 0x80} {
			data[p] ^= mask
			want := expectFlip(bs, i, p-bs[i].pos, data, orig, base)
			what := fmt.Sprintf("byte %d ^ %#02x (batch %d at %d)", p, mask, i, bs[i].pos)
			checkOutcome(t, what+" deep", data, base, want, true)
			checkOutcome(t, what+" shallow", data, base, want, false)
			if want.epochOnly {
				// Harmless: the CRC does not cover the epoch, so the scan is
				// clean, and only the Summary's leader epochs may change.
				stats["harmless epoch"]++
				flipped := layout(t, data, base)
				if flipped[i].epoch == bs[i].epoch {
					t.Fatalf("%s: leader epoch unchanged", what)
				}
				s, _ := scanBytes(data, base, true)
				o, _ := scanBytes(orig, base, true)
				if jsonOf(s.LeaderEpochs) != jsonOf(epochStarts(flipped)) {
					t.Fatalf("%s: leader epochs %v, want %v", what, s.LeaderEpochs, epochStarts(flipped))
				}
				if jsonOf(s.LeaderEpochs) != jsonOf(o.LeaderEpochs) {
					stats["harmless epoch, summary epochs differ"]++
				}
				s.LeaderEpochs, o.LeaderEpochs = nil, nil
				if !summariesEqual(s, o) {
					t.Fatalf("%s: summary changed beyond leader epochs", what)
				}
			} else if want.clean {
				stats["undetectable offset"]++
			} else if want.truncated {
				stats["truncated"]++
			} else {
				stats["corrupt"]++
			}
			data[p] ^= mask
		}
	}
	t.Logf("outcomes: %v", stats)
	if stats["corrupt"] == 0 {
		t.Fatal("no corruption detected at all")
	}
}

// TestTruncation cuts real segments at every batch boundary (a clean, shorter
// Summary) and at every byte inside a batch (ErrTruncated at that batch).
func TestTruncation(t *testing.T) {
	for _, fx := range corruptionFixtures[:3] {
		t.Run(filepath.Base(filepath.Dir(fx.rel)), func(t *testing.T) {
			testTruncation(t, readFile(t, filepath.Join(fixtureRoot, fx.rel)), 0)
		})
	}
}

func testTruncation(t *testing.T, orig []byte, base int64) {
	bs := layout(t, orig, base)
	for i, b := range bs {
		s, err := scanBytes(orig[:b.pos], base, true)
		if err != nil || s.Batches != int64(i) || (i > 0 && s.LastOffset != bs[i-1].last) {
			t.Fatalf("cut at batch %d boundary %d: %d batches, err %v", i, b.pos, s.Batches, err)
		}
		for cut := b.pos + 1; cut < b.pos+b.size; cut++ {
			s, err := scanBytes(orig[:cut], base, true)
			var ce *CorruptionError
			if !IsTruncated(err) || !errors.As(err, &ce) || ce.Pos != b.pos || s.Batches != int64(i) {
				t.Fatalf("cut at %d inside batch %d (at %d): %v", cut, i, b.pos, err)
			}
			if cut-b.pos > offMagic && ce.BaseOffset != b.wireBase(orig) && !b.wireIsLast() {
				t.Fatalf("cut at %d: base offset %d, want %d", cut, ce.BaseOffset, b.wireBase(orig))
			}
		}
	}
	if s, err := scanBytes(orig, base, true); err != nil || s.Batches != int64(len(bs)) {
		t.Fatalf("whole file: %v", err)
	}
}

// wireBase is the offset field as written (a legacy wrapper's is its last offset).
func (b batchInfo) wireBase(data []byte) int64 { return int64(binary.BigEndian.Uint64(data[b.pos:])) }

// epochStarts is the Summary's leader-epoch rule: an entry whenever a batch's
// epoch rises above the last one recorded (negative epochs are "none").
func epochStarts(bs []batchInfo) []EpochStart {
	var out []EpochStart
	for _, b := range bs {
		if b.magic == MagicV2 && b.epoch >= 0 && (len(out) == 0 || b.epoch > out[len(out)-1].Epoch) {
			out = append(out, EpochStart{Epoch: b.epoch, StartOffset: b.base})
		}
	}
	return out
}
