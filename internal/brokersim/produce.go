package brokersim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordGen makes a topic's records: repeatable from its seed, with
// compressible JSON-like values.
type recordGen struct {
	spec TopicSpec
	rng  *rand.Rand
	seq  int64 // records made so far
	ts   int64 // next timestamp before jitter, ms
}

func newRecordGen(spec TopicSpec, seed uint64, start time.Time) *recordGen {
	return &recordGen{spec: spec, rng: rand.New(rand.NewPCG(seed, 0x7265636f7264)), ts: start.UnixMilli()}
}

var (
	words  = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"}
	events = []string{"click", "view", "purchase", "signup", "logout", "search"}
)

// next makes n records, already assigned to partitions, in the order they
// are produced. Live records get no timestamp: kgo stamps them with the
// wall clock at Produce, as any live producer does.
func (g *recordGen) next(n int, live bool) []*kgo.Record {
	s := &g.spec
	out := make([]*kgo.Record, n)
	for i := range out {
		seq := g.seq
		g.seq++
		part := int32(seq % int64(s.Partitions))
		r := &kgo.Record{Topic: s.Name, Partition: part}
		switch {
		case s.KeyBytes < 0:
		case s.Compacted:
			// The same key always lands in the same partition, as with a
			// hashing partitioner.
			k := int64(g.rng.IntN(s.KeySpace))*int64(s.Partitions) + int64(part)
			r.Key = padded("key-"+strconv.FormatInt(k, 10), s.KeyBytes)
		default:
			r.Key = padded("key-"+strconv.FormatInt(seq, 10), s.KeyBytes)
		}
		if !(s.Compacted && s.TombstoneEvery > 0 && seq%int64(s.TombstoneEvery) == int64(s.TombstoneEvery-1)) {
			r.Value = g.value(seq)
		}
		for h := 0; h < s.Headers; h++ {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "h" + strconv.Itoa(h),
				Value: []byte(strconv.FormatUint(g.rng.Uint64(), 16))})
		}
		out[i] = r
		if live {
			continue
		}
		ts := g.ts
		if j := s.TimestampJitter.Milliseconds(); j > 0 {
			ts += g.rng.Int64N(2*j+1) - j
		}
		g.ts += max(s.TimestampStep.Milliseconds(), 1)
		r.Timestamp = time.UnixMilli(ts)
	}
	return out
}

func padded(s string, n int) []byte {
	b := []byte(s)
	for len(b) < n {
		b = append(b, '.')
	}
	return b[:max(n, len(s))]
}

func (g *recordGen) value(seq int64) []byte {
	n := g.spec.ValueBytes
	b := make([]byte, 0, n+16)
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"user":"user-`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(5000)), 10)
	b = append(b, `","event":"`...)
	b = append(b, events[g.rng.IntN(len(events))]...)
	b = append(b, `","amount":`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(100000)), 10)
	b = append(b, `,"note":"`...)
	for len(b) < n-2 {
		b = append(b, words[g.rng.IntN(len(words))]...)
		b = append(b, ' ')
	}
	if len(b) > n-2 {
		b = b[:max(n-2, 0)]
	}
	return append(b, `"}`...)[:n]
}

func (t *topic) openProducers(addrs []string) error {
	s := &t.spec
	for i := 0; i < s.Producers; i++ {
		opts := []kgo.Opt{
			kgo.SeedBrokers(addrs...),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ManualFlushing(), // a Flush makes one batch per partition
			kgo.MaxBufferedRecords(1 << 20),
			kgo.ProducerBatchCompression(codecFor(codecNames[s.Codec])),
		}
		switch {
		case s.Transactional:
			opts = append(opts, kgo.TransactionalID(fmt.Sprintf("%s-txn-%d", s.Name, i)))
		case !s.Idempotent:
			opts = append(opts, kgo.DisableIdempotentWrite())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return fmt.Errorf("brokersim: producer for %s: %w", s.Name, err)
		}
		t.prods = append(t.prods, cl)
	}
	return nil
}

func (t *topic) closeProducers() {
	for _, cl := range t.prods {
		cl.Close()
	}
	t.prods = nil
}

// produce writes n new records. Each producer takes every Producers-th
// chunk of BatchRecords records of each partition; a round (one chunk per
// partition) ends with a Flush, so a round is one batch per partition.
// Transactional producers wrap TxnBatches rounds in a transaction and abort
// every AbortEvery-th one. Needs prodMu.
func (t *topic) produce(ctx context.Context, n int, live bool) ([]Record, error) {
	s := &t.spec
	if len(t.prods) == 0 {
		return nil, errors.New("topic has no producers")
	}
	recs := t.gen.next(n, live)
	queues := make([][]*kgo.Record, s.Partitions)
	for _, r := range recs {
		queues[r.Partition] = append(queues[r.Partition], r)
	}
	// rounds[producer][round] = records of that round
	rounds := make([][][]*kgo.Record, s.Producers)
	for _, q := range queues {
		for c := 0; c*s.BatchRecords < len(q); c++ {
			chunk := q[c*s.BatchRecords : min((c+1)*s.BatchRecords, len(q))]
			pi, ri := c%s.Producers, c/s.Producers
			for len(rounds[pi]) <= ri {
				rounds[pi] = append(rounds[pi], nil)
			}
			rounds[pi][ri] = append(rounds[pi][ri], chunk...)
		}
	}
	var (
		mu   sync.Mutex
		out  []Record
		errs []error
		wg   sync.WaitGroup
	)
	for i, cl := range t.prods {
		if len(rounds[i]) == 0 {
			continue
		}
		txnAborts := make([]bool, 0)
		if s.Transactional {
			for r := 0; r < len(rounds[i]); r += s.TxnBatches {
				t.txnSeq++
				txnAborts = append(txnAborts, s.AbortEvery > 0 && t.txnSeq%s.AbortEvery == 0)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := runProducer(ctx, cl, rounds[i], s, txnAborts)
			mu.Lock()
			out = append(out, got...)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// runProducer produces the rounds of one client and returns what it
// wrote, each record with its assigned offset.
func runProducer(ctx context.Context, cl *kgo.Client, rounds [][]*kgo.Record, s *TopicSpec, aborts []bool) ([]Record, error) {
	var out []Record
	var mu sync.Mutex
	var perr error
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if perr == nil {
				perr = err
			}
			return
		}
		rec := Record{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value,
			Timestamp: r.Timestamp.UnixMilli(), ProducerID: r.ProducerID, ProducerEpoch: r.ProducerEpoch,
			Transactional: s.Transactional}
		if !s.Idempotent {
			rec.ProducerID, rec.ProducerEpoch = -1, -1
		}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, Header{Key: h.Key, Value: h.Value})
		}
		out = append(out, rec)
	}
	flush := func(rs [][]*kgo.Record) error {
		for _, round := range rs {
			for _, r := range round {
				cl.Produce(ctx, r, promise)
			}
			if err := cl.Flush(ctx); err != nil {
				return err
			}
			mu.Lock()
			err := perr
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if !s.Transactional {
		err := flush(rounds)
		return out, err
	}
	for txn := 0; txn*s.TxnBatches < len(rounds); txn++ {
		if err := cl.BeginTransaction(); err != nil {
			return out, fmt.Errorf("begin transaction: %w", err)
		}
		first := len(out)
		if err := flush(rounds[txn*s.TxnBatches : min((txn+1)*s.TxnBatches, len(rounds))]); err != nil {
			return out, errors.Join(err, cl.AbortBufferedRecords(ctx), cl.EndTransaction(ctx, kgo.TryAbort))
		}
		commit := kgo.TryCommit
		if aborts[txn] {
			commit = kgo.TryAbort
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			return out, fmt.Errorf("end transaction: %w", err)
		}
		if commit == kgo.TryAbort {
			mu.Lock()
			for i := first; i < len(out); i++ {
				out[i].Aborted = true
			}
			mu.Unlock()
		}
	}
	return out, nil
}

// loop is a background producer started by RunProducer.
type loop struct {
	done chan struct{}
	quit chan struct{}
	err  error
	once sync.Once
}

func (l *loop) stop() error {
	l.once.Do(func() { close(l.quit) })
	<-l.done
	return l.err
}

// RunProducer produces to a topic in the background at about
// recordsPerSecond, in ticks of 100ms, until the returned stop function (or
// Close) is called. stop returns the first error. While the topic is
// deleted the loop idles, and resumes when it is created again.
func (b *Broker) RunProducer(topicName string, recordsPerSecond int) (stop func() error) {
	l := &loop{done: make(chan struct{}), quit: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(l.done)
		l.err = ErrClosed
		return l.stop
	}
	b.loops = append(b.loops, l)
	b.mu.Unlock()
	const tick = 100 * time.Millisecond
	go func() {
		defer close(l.done)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		var owed float64
		for {
			select {
			case <-l.quit:
				return
			case <-tk.C:
			}
			owed += float64(recordsPerSecond) * tick.Seconds()
			n := int(owed)
			if n == 0 {
				continue
			}
			owed -= float64(n)
			// A background context: stopping waits for the append in
			// progress instead of cutting a transaction in half.
			if _, err := b.Append(context.Background(), topicName, n); err != nil && !errors.Is(err, ErrUnknownTopic) {
				l.err = err
				return
			}
		}
	}()
	return l.stop
}
