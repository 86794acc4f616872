package index

import (
	"bytes"
	"context"
	"math/rand"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segvault/segvault/segment"
)

// Test data beyond the fixtures comes from a real Kafka client: franz-go
// producing into its in-process kfake cluster, the stored batches fetched
// back raw with a FetchRequest and concatenated into a .log, exactly the
// bytes a broker keeps on disk (kfake stores the producer's batches as they
// arrive, like a leader's log).

const kfTopic = "t"

// kfBase is the fixed start of the record timestamps the scenarios set.
const kfBase = int64(1_700_000_000_000)

type kfCluster struct {
	t  testing.TB
	c  *kfake.Cluster
	id [16]byte
}

func newKfake(t testing.TB, brokers int) *kfCluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(1, kfTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &kfCluster{t: t, c: c}
}

func (k *kfCluster) client(opts ...kgo.Opt) *kgo.Client {
	k.t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(k.c.ListenAddrs()...),
		kgo.DefaultProduceTopic(kfTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.RecordRetries(20),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(cl.Close)
	return cl
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (k *kfCluster) produceSync(cl *kgo.Client, recs ...*kgo.Record) {
	k.t.Helper()
	if err := cl.ProduceSync(ctxT(k.t), recs...).FirstErr(); err != nil {
		k.t.Fatal(err)
	}
}

// fetched is what one full read of partition 0 returns.
type fetched struct {
	log     []byte // all batches, as a .log file starting at offset 0
	aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction
	hw      int64
}

// fetchAll reads partition 0 from offset 0 to the high watermark, and
// again with read_committed, whose FetchResponses list kfake's aborted
// transactions: an independent view of what the .txnindex must hold.
func (k *kfCluster) fetchAll(cl *kgo.Client) fetched {
	k.t.Helper()
	out := k.fetch(cl, 0)
	out.aborted = k.fetch(cl, 1).aborted
	return out
}

func (k *kfCluster) fetch(cl *kgo.Client, isolation int8) fetched {
	k.t.Helper()
	ctx := ctxT(k.t)
	if k.id == ([16]byte{}) {
		mreq := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(kfTopic)
		mreq.Topics = append(mreq.Topics, mt)
		mresp, err := mreq.RequestWith(ctx, cl)
		if err != nil || len(mresp.Topics) != 1 {
			k.t.Fatalf("metadata: %v", err)
		}
		k.id = mresp.Topics[0].TopicID
	}
	var out fetched
	off := int64(0)
	for i := 0; i < 1000; i++ {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxBytes = 1 << 26
		req.IsolationLevel = isolation
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = kfTopic, k.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset = off
		rp.PartitionMaxBytes = 1 << 26
		rp.CurrentLeaderEpoch = -1
		rp.LogStartOffset = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		leader := k.c.LeaderFor(kfTopic, 0)
		kresp, err := cl.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			k.t.Fatal(err)
		}
		resp := kresp.(*kmsg.FetchResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			k.t.Fatalf("fetch: unexpected response %+v", resp)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			k.t.Fatalf("fetch: error code %d", p.ErrorCode)
		}
		out.hw = p.HighWatermark
		out.aborted = append(out.aborted, p.AbortedTransactions...)
		if len(p.RecordBatches) == 0 {
			break
		}
		out.log = append(out.log, p.RecordBatches...)
		r := segment.NewReader(bytes.NewReader(out.log), int64(len(out.log)), "fetched", segment.ReaderOptions{BaseOffset: 0})
		for r.Next() {
			off = r.Batch().NextOffset()
		}
		if err := r.Err(); err != nil {
			k.t.Fatalf("fetched batches do not parse: %v", err)
		}
		if off >= p.HighWatermark {
			break
		}
	}
	return out
}

// kfRecord is a record with a deterministic value of n bytes and timestamp.
// Values are compressible text: kgo sends a batch uncompressed when
// compression would not make it smaller.
func kfRecord(rng *rand.Rand, n int, ts int64) *kgo.Record {
	v := make([]byte, n)
	for i := range v {
		v[i] = "acgt"[rng.Intn(4)]
	}
	return &kgo.Record{Partition: 0, Value: v, Key: []byte{byte(n)}, Timestamp: time.UnixMilli(ts)}
}

// genPlain: an idempotent producer, one record per produce request (one
// batch per append, like a leader's log), sizes 20..900 bytes, timestamps
// mostly increasing with some late and some early records so the running
// max timestamp and its offset are exercised.
func genPlain(t testing.TB, n int) fetched {
	k := newKfake(t, 1)
	cl := k.client()
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < n; i++ {
		ts := kfBase + int64(i)*1000
		switch {
		case i%7 == 3:
			ts -= 30_000
		case i%29 == 5:
			ts += 5_000
		case i%11 == 0 && i > 0:
			ts -= 1000 // equal to the previous record's timestamp
		}
		k.produceSync(cl, kfRecord(rng, 20+rng.Intn(880), ts))
	}
	return k.fetchAll(cl)
}

// genBatched: multi-record batches in every codec, record timestamps out of
// order inside batches (so the record holding a batch's max timestamp is
// not its last).
func genBatched(t testing.TB) fetched {
	f, _ := genBatchedTruth(t)
	return f
}

// genBatchedTruth is genBatched plus the timestamp the producer gave each
// offset (an oracle for record-level timestamps inside compressed batches).
func genBatchedTruth(t testing.TB) (fetched, map[int64]int64) {
	truth := map[int64]int64{}
	k := newKfake(t, 1)
	rng := rand.New(rand.NewSource(2))
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	ts := kfBase
	var last *kgo.Client
	for round := 0; round < 3; round++ {
		for _, codec := range codecs {
			cl := k.client(kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(time.Minute))
			var recs []*kgo.Record
			for i := 0; i < 5+rng.Intn(40); i++ {
				ts += int64(rng.Intn(2000))
				rts := ts
				if i%3 == 1 {
					rts = ts + 10_000 // a max in the middle of the batch
				}
				recs = append(recs, kfRecord(rng, 10+rng.Intn(300), rts))
			}
			var perr error
			for _, r := range recs {
				cl.Produce(ctxT(t), r, func(_ *kgo.Record, err error) {
					if err != nil {
						perr = err
					}
				})
			}
			if err := cl.Flush(ctxT(t)); err != nil || perr != nil {
				t.Fatal(err, perr)
			}
			for _, r := range recs {
				truth[r.Offset] = r.Timestamp.UnixMilli()
			}
			if last != nil {
				last.Close()
			}
			last = cl
		}
	}
	return k.fetchAll(last), truth
}

// txnScenario is the output of genTxn with the offsets a test splits on.
type txnScenario struct {
	fetched
	split []int64 // segment base offsets after the first (0): each lies inside an open transaction
}

// genTxn: two transactional producers (A, B) and one idempotent producer
// (C) interleaved: aborted transactions while another producer's
// transaction is open (lastStableOffset = that transaction's first offset),
// aborted ones with nothing else open (lso = marker+1), commits, and
// transactions that span the segment splits.
func genTxn(t testing.TB) txnScenario {
	k := newKfake(t, 1)
	rng := rand.New(rand.NewSource(3))
	a := k.client(kgo.TransactionalID("a"))
	b := k.client(kgo.TransactionalID("b"))
	c := k.client()
	ctx := ctxT(t)
	ts := kfBase
	rec := func() *kgo.Record { ts += 100; return kfRecord(rng, 30+rng.Intn(500), ts) }
	begin := func(cl *kgo.Client) {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	end := func(cl *kgo.Client, commit bool) {
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	var sc txnScenario
	next := int64(0)
	produce := func(cl *kgo.Client, n int) {
		for i := 0; i < n; i++ {
			r := rec()
			k.produceSync(cl, r)
			next = r.Offset + 1
		}
	}
	for round := 0; round < 6; round++ {
		begin(a)
		produce(a, 3)
		begin(b)
		produce(b, 2)
		produce(c, 2)
		end(a, false) // aborted while b is open: lso = b's first offset
		produce(b, 1)
		if round%2 == 0 {
			sc.split = append(sc.split, next) // b's transaction spans this split
		}
		produce(c, 1)
		end(b, round%3 != 0) // some of b's transactions abort with nothing else open
		begin(a)
		produce(a, 2)
		end(a, true)
		begin(b)
		end(b, false) // an empty transaction: no marker data, no entry
		produce(c, 3)
	}
	sc.fetched = k.fetchAll(c)
	return sc
}

// genEpochs: leadership moves between two brokers while producing, so
// batches carry increasing partition leader epochs.
func genEpochs(t testing.TB) fetched {
	k := newKfake(t, 2)
	cl := k.client()
	rng := rand.New(rand.NewSource(4))
	ts := kfBase
	for move := 0; move < 4; move++ {
		for i := 0; i < 5; i++ {
			ts += 1000
			k.produceSync(cl, kfRecord(rng, 100, ts))
		}
		if err := k.c.MoveTopicPartition(kfTopic, 0, 1-k.c.LeaderFor(kfTopic, 0)); err != nil {
			t.Fatal(err)
		}
	}
	return k.fetchAll(cl)
}

// splitLog cuts a log into segments at the given base offsets (each must
// be a batch's base offset) and returns the segments' bytes.
func splitLog(t testing.TB, log []byte, bases []int64) [][]byte {
	t.Helper()
	var segs [][]byte
	r := segment.NewReader(bytes.NewReader(log), int64(len(log)), "split", segment.ReaderOptions{BaseOffset: 0})
	start := int64(0)
	bi := 0
	for r.Next() {
		b := r.Batch()
		if bi < len(bases) && b.BaseOffset >= bases[bi] {
			segs = append(segs, log[start:b.Pos])
			start = b.Pos
			bi++
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return append(segs, log[start:])
}

func firstOffset(t testing.TB, seg []byte) int64 {
	t.Helper()
	r := segment.NewReader(bytes.NewReader(seg), int64(len(seg)), "seg", segment.ReaderOptions{BaseOffset: -1})
	if !r.Next() {
		t.Fatalf("empty segment: %v", r.Err())
	}
	return r.Batch().BaseOffset
}

func newRng(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
