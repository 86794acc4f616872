package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

// h33BlockBucket holds every WritePart until release is closed, counting
// the parts held at once (each holds one part buffer).
type h33BlockBucket struct {
	nullStreamBucket
	release chan struct{}
	held    atomic.Int64
}

func (b *h33BlockBucket) CreateStream(context.Context, string, uploader.PutOptions) (uploader.ObjectStream, error) {
	return h33BlockStream{b}, nil
}

type h33BlockStream struct{ b *h33BlockBucket }

func (s h33BlockStream) WritePart(ctx context.Context, _ int, _ []byte, _ string) error {
	s.b.held.Add(1)
	defer s.b.held.Add(-1)
	select {
	case <-s.b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (h33BlockStream) Complete(context.Context) error { return nil }
func (h33BlockStream) Abort(context.Context) error    { return nil }

// TestH33SharedPartBudget: concurrent writers share one process-wide budget:
// each has one part buffer of its own (the SharedPartBuffers are for a
// writer alone), so n writers hold at most n parts, not 2n, and the chunk
// slots are shared too; all of them still finish (no deadlock) and store
// every byte.
func TestH33SharedPartBudget(t *testing.T) {
	const writers, size = 4, 48 << 20
	b := &h33BlockBucket{release: make(chan struct{})}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	recs := make([]FileRecord, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := NewFileWriter(context.Background(), b, fmt.Sprint(i), WriterOptions{Compression: CompressionNone, SizeHint: size})
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := io.CopyBuffer(w, newGenReader(byte(i), size), make([]byte, 256<<10)); err != nil {
				errs[i] = err
				w.Abort()
				return
			}
			recs[i], errs[i] = w.Close()
		}()
	}
	// Every writer fills what it may and blocks; then count.
	var held int64
	for stable := 0; stable < 5; {
		time.Sleep(100 * time.Millisecond)
		if h := b.held.Load(); h == held && h > 0 {
			stable++
		} else {
			held, stable = h, 0
		}
	}
	close(b.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		if recs[i].Size != size {
			t.Fatalf("writer %d: size %d, want %d", i, recs[i].Size, size)
		}
	}
	if held > writers || held < 1 {
		t.Fatalf("%d parts held at once by %d writers, want 1..%d (one each, none shared)", held, writers, writers)
	}
	t.Logf("%d writers held %d part buffers at once", writers, held)
}

// BenchmarkH33RSSAgent reports the peak RSS of two 1 GiB files written at
// once, as the agent ships segments (Concurrency 2), in a fresh process.
// Run: go test -run '^$' -bench H33RSS -benchtime 1x ./archive
func BenchmarkH33RSSAgent(b *testing.B) {
	if os.Getenv("H33_RSS_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkH33RSSAgent$", "-test.benchtime=1x", "-test.v")
		cmd.Env = append(os.Environ(), "H33_RSS_CHILD=1")
		out, err := cmd.CombinedOutput()
		b.Logf("%s", out)
		if err != nil {
			b.Fatalf("child: %v", err)
		}
		return
	}
	const size = 1 << 30
	for _, tc := range []struct {
		name string
		src  func(i int) io.Reader
	}{
		{"incompressible", func(i int) io.Reader { return newGenReader(byte(9+i), size) }},
		{"compressible", func(i int) io.Reader { return &h22Repeat{block: compressible(4<<20 + 17 + i), n: size} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srcs := []io.Reader{tc.src(0), tc.src(1)} // the test data is not the writers' memory
			runtime.GC()
			debug.FreeOSMemory()
			peak := h22PeakRSS(b)
			start := time.Now()
			var heapMax atomic.Uint64
			stopHeap := make(chan struct{})
			go func() { // the Go heap in use, sampled
				var ms runtime.MemStats
				for {
					select {
					case <-stopHeap:
						return
					case <-time.After(20 * time.Millisecond):
					}
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > heapMax.Load() {
						heapMax.Store(ms.HeapInuse)
					}
				}
			}()
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w, err := NewFileWriter(context.Background(), nullStreamBucket{}, fmt.Sprint(i), WriterOptions{SizeHint: size})
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.CopyBuffer(w, srcs[i], make([]byte, 256<<10)); err != nil {
						b.Error(err)
					}
					if _, err := w.Close(); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			close(stopHeap)
			b.ReportMetric(float64(heapMax.Load()>>20), "heap-inuse-MiB")
			p := peak()
			b.ReportMetric(float64(p>>20), "peak-RSS-MiB")
			b.ReportMetric(float64(2*size)/el.Seconds()/1e6, "MB/s")
		})
	}
}
