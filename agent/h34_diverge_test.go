package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/segment"
	"github.com/segvault/segvault/uploader"
)

// h34Batches returns the real fixture's bytes and its batches.
func h34Batches(t *testing.T) ([]byte, []segment.Batch) {
	t.Helper()
	data, err := os.ReadFile(h25StatusLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []segment.Batch
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), h25StatusLog, segment.ReaderOptions{BaseOffset: -1})
	for r.Next() {
		out = append(out, *r.Batch())
	}
	if r.Err() != nil || len(out) < 100 {
		t.Fatalf("%s: %v (%d batches)", h25StatusLog, r.Err(), len(out))
	}
	return data, out
}

// h34Partition replaces dir/part's segments with the given (base, bytes)
// segments plus an empty active segment at next.
func h34Partition(t *testing.T, dir, part string, segs map[int64][]byte, next int64) {
	t.Helper()
	p := filepath.Join(dir, part)
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".index") || strings.HasSuffix(n, ".timeindex") || strings.HasSuffix(n, ".snapshot") {
			if err := os.Remove(filepath.Join(p, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	segs[next] = nil
	for base, b := range segs {
		if err := os.WriteFile(filepath.Join(p, segment.FormatName(base, segment.KindLog)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func h34Run(t *testing.T, b uploader.Bucket, cfg Config) (*Metrics, []Divergence) {
	t.Helper()
	m := NewMetrics(nil)
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), m, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m, a.Divergences()
}

func h34Value(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// h34CheckReport checks that the bucket holds exactly one divergence
// report, d's, and that the scrub reads it as intact.
func h34CheckReport(t *testing.T, b uploader.Bucket, d Divergence, diffByte int64) {
	t.Helper()
	ctx := context.Background()
	l := archive.NewLayout("")
	cat, err := archive.ListAll(ctx, b, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Divergences) != 1 {
		t.Fatalf("divergence reports in the bucket: %+v, want 1", cat.Divergences)
	}
	e := cat.Divergences[0]
	if e.Key.Broker != 1 || e.Key.Topic != "t" || e.Key.Partition != 0 || e.Key.BaseOffset != 0 || e.Object.Key != d.ReportKey {
		t.Fatalf("report key %s (%+v), want broker 1's for t-0 base 0 (%s)", e.Object.Key, e.Key, d.ReportKey)
	}
	data, err := uploader.ReadAll(ctx, b, e.Object.Key, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.DecodeDivergenceReport(e.Object.Key, data)
	if err != nil {
		t.Fatal(err)
	}
	if r.BrokerID != 1 || r.ArchivedBroker != 2 || r.ManifestKey != d.ManifestKey || r.DataKey != d.DataKey || r.Bytes != d.Bytes ||
		r.FirstDiffStart > diffByte || r.FirstDiffEnd <= diffByte || r.DetectedAt.IsZero() {
		t.Fatalf("report %+v, want broker 1 against broker 2's %s, a range holding byte %d", r, d.ManifestKey, diffByte)
	}
	res, err := archive.Check(ctx, b, l, archive.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range res {
		if c.Kind == "divergence-report" {
			found = true
			if c.Status != "ok" || !strings.Contains(c.Detail, "broker 1's replica") {
				t.Fatalf("scrub of the report: %+v", c)
			}
		}
	}
	if !found {
		t.Fatalf("the scrub did not check the divergence report: %+v", res)
	}
}

// A standby replica compares its rolled segments with the designated
// broker's archived copy: broker 1's copy of t-0 has one batch rewritten
// (valid CRC, other bytes) and is reported as diverged, with the chunk's
// byte range; broker 3's copy, rolled at another offset, is not comparable
// (never diverged); identical copies (t-1) count as same.
func TestH34Divergence(t *testing.T) {
	data, batches := h34Batches(t)
	next := batches[len(batches)-1].BaseOffset + int64(batches[len(batches)-1].LastOffsetDelta) + 1
	brokers := h28Brokers(t) // t-0: replicas [1 2 3], leader 2
	h34Partition(t, brokers[1].dir, "t-0", map[int64][]byte{0: data}, next)

	flipped := bytes.Clone(data)
	bt := batches[50]
	end := bt.Pos + 12 + int64(bt.Length)
	flipped[end-1] ^= 0xff // the last record's last header/value byte
	binary.BigEndian.PutUint32(flipped[bt.Pos+17:], crc32.Checksum(flipped[bt.Pos+21:end], crc32.MakeTable(crc32.Castagnoli)))
	h34Partition(t, brokers[0].dir, "t-0", map[int64][]byte{0: flipped}, next)

	split := batches[60]
	h34Partition(t, brokers[2].dir, "t-0", map[int64][]byte{0: data[:split.Pos], split.BaseOffset: data[split.Pos:]}, next)

	// t-1 (designated: broker 1): the same real bytes on every replica.
	configs, err := os.ReadFile(h25ConfigsLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range brokers {
		h34Partition(t, br.dir, "t-1", map[int64][]byte{0: configs}, 54)
	}

	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	h34Run(t, b, brokers[1].cfg) // broker 2 archives t-0 (and stands by for t-1)
	m1, div := h34Run(t, b, brokers[0].cfg)
	if len(div) != 1 {
		t.Fatalf("broker 1: divergences %+v, want one on t-0", div)
	}
	d := div[0]
	if d.Topic != "t" || d.Partition != 0 || d.BaseOffset != 0 || d.Broker != 2 || !strings.Contains(d.ManifestKey, "/t/0/") ||
		d.DataKey == "" || d.Start > end-1 || d.End <= end-1 || !strings.HasSuffix(d.File, "t-0/00000000000000000000.log") {
		t.Fatalf("divergence %+v: want t-0 base 0 against broker 2, a range holding byte %d", d, end-1)
	}
	if v := h34Value(t, m1.ReplicaDivergence.WithLabelValues(DivergenceDiverged)); v != 1 {
		t.Fatalf("diverged counter %v, want 1", v)
	}
	if o, s := h34Value(t, m1.PartitionRoles.WithLabelValues("owner")), h34Value(t, m1.PartitionRoles.WithLabelValues("standby")); o != 2 || s != 1 {
		t.Fatalf("broker 1 roles: owner %v standby %v, want 2 and 1 (t-1 designated and its own __cluster_metadata, t-0 standby)", o, s)
	}
	// The divergence is in the bucket too (ls and the scrub show it): one
	// report, at broker 1's key for t-0 base 0, naming broker 2's copy.
	h34CheckReport(t, b, d, end-1)
	if _, div := h34Run(t, b, brokers[0].cfg); len(div) != 1 { // a restart finds it again: the report stays one
		t.Fatalf("broker 1 again: divergences %+v", div)
	}
	h34CheckReport(t, b, d, end-1)
	m3, div := h34Run(t, b, brokers[2].cfg)
	if len(div) != 0 {
		t.Fatalf("broker 3 (other boundaries): divergences %+v, want none", div)
	}
	if v := h34Value(t, m3.ReplicaDivergence.WithLabelValues(DivergenceNotComparable)); v < 2 {
		t.Fatalf("broker 3: not_comparable %v, want >= 2 (both of its t-0 segments)", v)
	}
	if v := h34Value(t, m3.ReplicaDivergence.WithLabelValues(DivergenceDiverged)); v != 0 {
		t.Fatalf("broker 3: diverged %v", v)
	}
	// Broker 2 again: t-1 is now archived by broker 1; same bytes: same.
	m2, div := h34Run(t, b, brokers[1].cfg)
	if len(div) != 0 {
		t.Fatalf("broker 2: divergences %+v", div)
	}
	if v := h34Value(t, m2.ReplicaDivergence.WithLabelValues(DivergenceSame)); v != 1 {
		t.Fatalf("broker 2 on t-1: same %v, want 1", v)
	}
}

// Several chunks: the first differing one is named, not the whole file.
func TestH34CompareChunks(t *testing.T) {
	data, batches := h34Batches(t)
	const size = 4096
	l := &archivedLog{key: "m", broker: 2, size: int64(len(data)), data: "d"}
	for s := 0; s < len(data); s += size {
		e := min(s+size, len(data))
		l.chunks = append(l.chunks, crcRange{int64(s), int64(e), strconv.FormatUint(uint64(crc32.Checksum(data[s:e], crc32.MakeTable(crc32.Castagnoli))), 16)})
	}
	dir := t.TempDir()
	a := &Agent{}
	same := filepath.Join(dir, "same.log")
	if err := os.WriteFile(same, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := compareFile(context.Background(), a, same, l); err != nil || d != nil {
		t.Fatalf("identical file: %+v %v", d, err)
	}
	flipped := bytes.Clone(data)
	pos := batches[100].Pos + 30
	flipped[pos] ^= 1
	diff := filepath.Join(dir, "diff.log")
	if err := os.WriteFile(diff, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := compareFile(context.Background(), a, diff, l)
	if err != nil || d == nil || d.Start != pos/size*size || d.End != min(d.Start+size, int64(len(data))) {
		t.Fatalf("byte %d flipped: %+v %v", pos, d, err)
	}
	if _, err := compareFile(context.Background(), a, diff, &archivedLog{key: "m", size: 1, chunks: l.chunks}); err == nil || !strings.Contains(err.Error(), "size") {
		t.Fatalf("other size: %v", err)
	}
}
