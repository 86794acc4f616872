package segment

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The tests in this file get their batches from a real Kafka client:
// franz-go's producer (batching, compression, idempotence, transactions)
// writing to its in-process kfake broker. The raw batches are fetched back
// with a plain FetchRequest, so they keep the producer's encoding and CRCs,
// and are concatenated into a segment file as a broker would store them.

const kfTopic = "segvault-test"

// produced is what the producer was told it wrote.
type produced struct {
	offset    int64
	timestamp int64
	key       []byte
	value     []byte
	headers   []kgo.RecordHeader
	aborted   bool
}

// kfakeRun produces with codec through fn and returns the partition's raw
// batches as a segment, with what was produced.
type kfakeRun struct {
	t       testing.TB
	ctx     context.Context
	cluster *kfake.Cluster
	codec   kgo.CompressionCodec
	recs    []produced
	seq     int
}

func newKfakeRun(t testing.TB, codec kgo.CompressionCodec) *kfakeRun {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, kfTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return &kfakeRun{t: t, ctx: ctx, cluster: c, codec: codec}
}

func (k *kfakeRun) client(opts ...kgo.Opt) *kgo.Client {
	k.t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.DefaultProduceTopic(kfTopic),
		kgo.ProducerBatchCompression(k.codec), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(cl.Close)
	return cl
}

// makeRecords builds n records with compressible values, headers, a null
// key, an empty key and a tombstone among them.
func (k *kfakeRun) makeRecords(n int) []*kgo.Record {
	out := make([]*kgo.Record, n)
	for i := range out {
		k.seq++
		r := &kgo.Record{Partition: 0, Key: fmt.Appendf(nil, "key-%d", k.seq%7),
			Value: []byte(strings.Repeat(fmt.Sprintf("value %d of segvault's record ", k.seq), 1+k.seq%5))}
		switch k.seq % 6 {
		case 1:
			r.Key = nil
		case 2:
			r.Headers = []kgo.RecordHeader{{Key: "trace", Value: fmt.Appendf(nil, "t-%d", k.seq)}, {Key: "empty", Value: []byte{}}}
		case 3:
			r.Value = nil // tombstone
		case 4:
			r.Key = []byte{}
			r.Headers = []kgo.RecordHeader{{Key: "h", Value: nil}}
		}
		out[i] = r
	}
	return out
}

// produce sends recs in one go (one batch per ProduceSync as linger is 0 and
// they are all buffered before the first flush) and notes the results.
func (k *kfakeRun) produce(cl *kgo.Client, recs []*kgo.Record, aborted bool) {
	k.t.Helper()
	res := cl.ProduceSync(k.ctx, recs...)
	if err := res.FirstErr(); err != nil {
		k.t.Fatal(err)
	}
	for _, r := range res {
		k.recs = append(k.recs, produced{offset: r.Record.Offset, timestamp: r.Record.Timestamp.UnixMilli(),
			key: r.Record.Key, value: r.Record.Value, headers: r.Record.Headers, aborted: aborted})
	}
}

// fetchSegment reads the partition's raw batches with FetchRequests at
// read_uncommitted (aborted data and markers included) and concatenates them.
func (k *kfakeRun) fetchSegment(cl *kgo.Client) []byte {
	k.t.Helper()
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(kfTopic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(k.ctx, cl)
	if err != nil || len(mresp.Topics) != 1 {
		k.t.Fatalf("metadata: %v", err)
	}
	var seg []byte
	for off := int64(0); ; {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 1, 1, 64<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic, ft.TopicID = kfTopic, mresp.Topics[0].TopicID
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, off, 64<<20
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		resp, err := req.RequestWith(k.ctx, cl)
		if err != nil {
			k.t.Fatalf("fetch: %v", err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode == 1 && p.LogStartOffset > off { // OFFSET_OUT_OF_RANGE: retention or the cleaner moved the start
			off = p.LogStartOffset
			continue
		}
		if p.ErrorCode != 0 {
			k.t.Fatalf("fetch: error code %d", p.ErrorCode)
		}
		if len(p.RecordBatches) == 0 {
			if off >= p.HighWatermark {
				return seg
			}
			continue
		}
		r := NewReader(bytes.NewReader(p.RecordBatches), int64(len(p.RecordBatches)), "fetch", ReaderOptions{BaseOffset: -1})
		for r.Next() {
			if b := r.Batch(); b.BaseOffset >= off {
				seg = append(seg, r.Raw()...)
				off = b.NextOffset()
			}
		}
		if r.Err() != nil {
			k.t.Fatalf("fetched batches: %v", r.Err())
		}
		if off >= p.HighWatermark {
			return seg
		}
	}
}

var clientCodecs = []struct {
	name  string
	codec kgo.CompressionCodec
	want  Codec
}{
	{"none", kgo.NoCompression(), CodecNone},
	{"gzip", kgo.GzipCompression(), CodecGzip},
	{"snappy", kgo.SnappyCompression(), CodecSnappy},
	{"lz4", kgo.Lz4Compression(), CodecLZ4},
	{"zstd", kgo.ZstdCompression(), CodecZstd},
}

// TestRealClientSegments: idempotent batches, a committed and an aborted
// transaction, per codec; the deep scan must return exactly what the
// producer wrote, and the Summary the markers and the aborted transaction.
func TestRealClientSegments(t *testing.T) {
	for _, cc := range clientCodecs {
		t.Run(cc.name, func(t *testing.T) {
			k := newKfakeRun(t, cc.codec)
			idem := k.client()
			for _, n := range []int{1, 5, 40} {
				k.produce(idem, k.makeRecords(n), false)
			}
			txn := k.client(kgo.TransactionalID("segvault-txn"))
			for _, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
				if err := txn.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				k.produce(txn, k.makeRecords(3), !bool(commit))
				k.produce(txn, k.makeRecords(2), !bool(commit))
				if err := txn.EndTransaction(k.ctx, commit); err != nil {
					t.Fatal(err)
				}
			}
			k.produce(idem, k.makeRecords(4), false)
			seg := k.fetchSegment(idem)
			path := filepath.Join(t.TempDir(), FormatName(0, KindLog))
			if err := os.WriteFile(path, seg, 0o644); err != nil {
				t.Fatal(err)
			}
			k.check(path, cc.want)
		})
	}
}

// check scans the segment file deep and compares it with what was produced.
func (k *kfakeRun) check(path string, codec Codec) {
	t := k.t
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	s, err := Scan(f, info.Size(), path, ScanOptions{ReaderOptions: ReaderOptions{BaseOffset: 0}, Deep: true})
	if err != nil {
		t.Fatalf("deep scan: %v", err)
	}
	if s.Codecs[codec.String()] == 0 {
		t.Errorf("no %s batches: %v", codec, s.Codecs)
	}
	// Data records, in order, must be exactly the produced ones.
	data := readFile(t, path)
	r := NewReader(bytes.NewReader(data), int64(len(data)), path, ReaderOptions{BaseOffset: 0})
	var got []Record
	var markers []string
	for r.Next() {
		b := r.Batch()
		recs, err := r.Records()
		if err != nil {
			t.Fatal(err)
		}
		if b.Control() {
			ct, _ := ParseControlKey(recs[0].Key)
			markers = append(markers, fmt.Sprintf("%s@%d", ct, recs[0].Offset))
			continue
		}
		for _, rec := range recs {
			rec.Key, rec.Value = bytes.Clone(rec.Key), bytes.Clone(rec.Value)
			hs := rec.Headers
			rec.Headers = nil
			for _, h := range hs { // copy: they alias the Reader's buffers
				rec.Headers = append(rec.Headers, Header{Key: bytes.Clone(h.Key), Value: bytes.Clone(h.Value)})
			}
			got = append(got, rec)
		}
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if len(got) != len(k.recs) {
		t.Fatalf("%d data records, produced %d", len(got), len(k.recs))
	}
	var firstAborted int64 = -1
	for i, p := range k.recs {
		g := got[i]
		if g.Offset != p.offset || g.Timestamp != p.timestamp || !bytesEqualNull(g.Key, p.key) || !bytesEqualNull(g.Value, p.value) {
			t.Fatalf("record %d: got offset %d ts %d key %q value %q, produced %d %d %q %q", i, g.Offset, g.Timestamp,
				g.Key, g.Value, p.offset, p.timestamp, p.key, p.value)
		}
		if len(g.Headers) != len(p.headers) {
			t.Fatalf("record %d: %d headers, produced %d", i, len(g.Headers), len(p.headers))
		}
		for j, h := range p.headers {
			if string(g.Headers[j].Key) != h.Key || !bytesEqualNull(g.Headers[j].Value, h.Value) {
				t.Fatalf("record %d header %d: %q=%q, produced %q=%q", i, j, g.Headers[j].Key, g.Headers[j].Value, h.Key, h.Value)
			}
		}
		if p.aborted && firstAborted < 0 {
			firstAborted = p.offset
		}
	}
	if len(markers) != 2 || !strings.HasPrefix(markers[0], "COMMIT@") || !strings.HasPrefix(markers[1], "ABORT@") {
		t.Fatalf("markers %v", markers)
	}
	if len(s.Markers) != 2 || !s.Markers[0].Commit || s.Markers[1].Commit {
		t.Fatalf("summary markers %+v", s.Markers)
	}
	if len(s.Aborted) != 1 || s.Aborted[0].FirstOffset != firstAborted || s.Aborted[0].MarkerOffset != s.Markers[1].Offset ||
		s.Aborted[0].ProducerID != s.Markers[1].ProducerID {
		t.Fatalf("aborted %+v, want first offset %d and the ABORT marker %+v", s.Aborted, firstAborted, s.Markers[1])
	}
	if s.Records != int64(len(k.recs)+2) || s.FirstOffset != 0 || s.LastOffset != k.recs[len(k.recs)-1].offset {
		t.Fatalf("summary records %d offsets %d..%d", s.Records, s.FirstOffset, s.LastOffset)
	}
	if len(s.Producers) != 2 || s.TransactionalBatches < 6 || s.ControlBatches != 2 {
		t.Fatalf("producers %+v txn batches %d control %d", s.Producers, s.TransactionalBatches, s.ControlBatches)
	}
	shallow, err := Scan(bytes.NewReader(data), int64(len(data)), path, ScanOptions{ReaderOptions: ReaderOptions{BaseOffset: 0}})
	if err != nil {
		t.Fatal(err)
	}
	shallow.Deep = true
	if !summariesEqual(shallow, s) {
		t.Fatalf("shallow and deep summaries differ:\n%s\n%s", jsonOf(shallow), jsonOf(s))
	}
}

// bytesEqualNull compares byte slices, telling null (nil) from empty.
func bytesEqualNull(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// TestRealClientCompacted: kfake's log cleaner drops overwritten keys and
// rewrites batches keeping their base offset, leaving offset gaps inside and
// between batches; the deep scan must accept that and return the survivors.
func TestRealClientCompacted(t *testing.T) {
	k := newKfakeRun(t, kgo.NoCompression())
	cl := k.client()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, kfTopic
	cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	cfg.Name, cfg.Value = "cleanup.policy", kmsg.StringPtr("compact")
	res.Configs = append(res.Configs, cfg)
	req.Resources = append(req.Resources, res)
	if _, err := req.RequestWith(k.ctx, cl); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		recs := k.makeRecords(10)
		for _, r := range recs {
			if r.Key == nil {
				r.Key = []byte("key-null")
			}
		}
		k.produce(cl, recs, false)
	}
	k.cluster.Compact()
	seg := k.fetchSegment(cl)
	s, err := scanBytes(seg, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records >= int64(len(k.recs)) || s.LastOffset != k.recs[len(k.recs)-1].offset {
		t.Fatalf("compaction kept %d of %d records, last offset %d", s.Records, len(k.recs), s.LastOffset)
	}
	// Every surviving record before the active (last) batch, which the
	// cleaner leaves alone as Kafka leaves the active segment, is the last
	// write of its key within that cleanable range.
	cleanable := k.recs[:len(k.recs)-10]
	last := map[string]int64{}
	for _, p := range cleanable {
		last[string(p.key)] = p.offset
	}
	r := NewReader(bytes.NewReader(seg), int64(len(seg)), "compacted.log", ReaderOptions{BaseOffset: 0})
	sparse := 0
	for r.Next() {
		b := r.Batch()
		if int64(b.RecordCount) < int64(b.LastOffsetDelta)+1 {
			sparse++
		}
		recs, err := r.Records()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Offset <= cleanable[len(cleanable)-1].offset && last[string(rec.Key)] != rec.Offset {
				t.Fatalf("offset %d: key %q survived compaction, its last write is at %d", rec.Offset, rec.Key, last[string(rec.Key)])
			}
		}
	}
	if r.Err() != nil || sparse == 0 {
		t.Fatalf("%d sparse batches, err %v", sparse, r.Err())
	}
}
