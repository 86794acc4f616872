package main

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/segvault/segvault/segment"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// floorRead is the least any checker does: read the file through a 1 MiB
// buffer (the segment Reader's default) and CRC-32C every byte.
func floorRead(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var crc uint32
	var n int64
	for {
		k, err := f.Read(buf)
		crc = crc32.Update(crc, castagnoli, buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	_ = crc
	return n, nil
}

func scanFile(path string, deep bool) (*segment.Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return segment.Scan(f, fi.Size(), path, segment.ScanOptions{ReaderOptions: segment.ReaderOptions{BaseOffset: 0}, Deep: deep})
}

// throughput runs fn until minDur has passed (at least once) and returns
// bytes per second.
func throughput(minDur time.Duration, bytes int64, fn func() error) (float64, error) {
	var n int
	t0 := time.Now()
	for {
		if err := fn(); err != nil {
			return 0, err
		}
		n++
		if el := time.Since(t0); el >= minDur {
			return float64(bytes) * float64(n) / el.Seconds(), nil
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

const mib = 1 << 20

func (h *harness) benchVerify(ctx context.Context) error {
	minDur := time.Duration(h.sz.VerifyMinSeconds * float64(time.Second))
	for _, c := range verifyCodecs {
		if _, err := floorRead(h.verifyFile[c]); err != nil { // page-cache it
			return err
		}
	}
	shallowCodecs := map[string]bool{"none": true, "zstd": true}
	for _, c := range verifyCodecs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p := h.verifyFile[c]
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		size := fi.Size()
		sum, err := scanFile(p, true)
		if err != nil {
			return fmt.Errorf("deep scan of %s: %w", p, err)
		}
		var floors, shallows, deeps, decs []float64
		var decBytes int64
		for r := 0; r < h.sz.VerifyRounds; r++ {
			// Interleaved, so a burst of other work on the machine hits
			// both sides of a ratio alike.
			fl, err := throughput(minDur, size, func() error { _, err := floorRead(p); return err })
			if err != nil {
				return err
			}
			floors = append(floors, fl)
			if shallowCodecs[c] {
				sh, err := throughput(minDur, size, func() error { _, err := scanFile(p, false); return err })
				if err != nil {
					return err
				}
				shallows = append(shallows, sh)
			}
			dp, err := throughput(minDur, size, func() error { _, err := scanFile(p, true); return err })
			if err != nil {
				return err
			}
			deeps = append(deeps, dp)
			if c != "none" {
				dc, err := throughput(minDur, size, func() (err error) { decBytes, err = decompressOnly(p); return err })
				if err != nil {
					return fmt.Errorf("decompress %s: %w", p, err)
				}
				decs = append(decs, dc)
			}
		}
		floor := median(floors) / mib
		ds := fmt.Sprintf("verify-%s (%s)", c, humanBytes(size))
		if shallowCodecs[c] {
			h.rep.add(row{ID: "verify.shallow." + c, Group: "verify", Name: "Shallow verify throughput (segment.Scan)", Dataset: ds,
				Value: median(shallows) / mib, Unit: "MiB/s", Baseline: "read + CRC-32C floor", BaselineValue: floor, Better: "higher",
				Extra: map[string]float64{"batches": float64(sum.Batches), "avg_batch_bytes": float64(size) / float64(max(sum.Batches, 1))}})
		}
		deep := median(deeps) / mib
		x := row{ID: "verify.deep." + c, Group: "verify", Name: "Deep verify throughput, codec " + c + " (segment.Scan Deep)", Dataset: ds,
			Value: deep, Unit: "MiB/s", Baseline: "read + CRC-32C floor", BaselineValue: floor, Better: "higher",
			Extra: map[string]float64{"records_per_second": float64(sum.Records) * deep * mib / float64(size), "records": float64(sum.Records), "batches": float64(sum.Batches)}}
		x.Notes = fmt.Sprintf("%s records/s (%d records in %d batches).", thousands(fmt.Sprintf("%.0f", x.Extra["records_per_second"])), sum.Records, sum.Batches)
		if len(decs) > 0 {
			dec := median(decs) / mib
			x.Extra["decompress_only_mib_s"] = dec
			x.Extra["decompressed_bytes"] = float64(decBytes)
			x.Notes += fmt.Sprintf(" Second reference: only decompressing every batch with the same libraries (shallow Reader, no record parsing) runs at %.0f MiB/s of segment bytes (%.0f MiB/s decompressed, %.1f× expansion); deep verify is %.2f× that.",
				dec, dec*float64(decBytes)/float64(size), float64(decBytes)/float64(size), deep/dec)
		}
		h.rep.add(x)
	}
	// Allocations on the shallow path, per batch, for a whole file.
	p := h.verifyFile["none"]
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	scanAllocs, batches, err := allocsOf(func() (int64, error) {
		s, err := scanFile(p, false)
		if err != nil {
			return 0, err
		}
		return s.Batches, nil
	})
	if err != nil {
		return err
	}
	readerAllocs, _, err := allocsOf(func() (int64, error) {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		r := segment.NewReader(f, fi.Size(), p, segment.ReaderOptions{BaseOffset: 0})
		for r.Next() {
		}
		return int64(r.Count()), r.Err()
	})
	if err != nil {
		return err
	}
	ds := fmt.Sprintf("verify-none (%s)", humanBytes(fi.Size()))
	h.rep.add(row{ID: "verify.allocs.scan", Group: "verify", Name: "Allocations per batch, shallow segment.Scan", Dataset: ds,
		Value: scanAllocs / float64(batches), Unit: "allocs/batch",
		Notes: fmt.Sprintf("%.0f allocations for one shallow Scan of %d batches (runtime.MemStats.Mallocs delta, file open included); the bare segment.Reader loop made %.0f.", scanAllocs, batches, readerAllocs),
		Extra: map[string]float64{"scan_allocs_per_file": scanAllocs, "reader_allocs_per_file": readerAllocs, "batches": float64(batches)}})
	return nil
}

// allocsOf runs fn three times and returns the median heap allocations of
// one run and what fn returned.
func allocsOf(fn func() (int64, error)) (float64, int64, error) {
	var res []float64
	var out int64
	for i := 0; i < 3; i++ {
		runtime.GC()
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		n, err := fn()
		runtime.ReadMemStats(&b)
		if err != nil {
			return 0, 0, err
		}
		out = n
		res = append(res, float64(b.Mallocs-a.Mallocs))
	}
	return median(res), out, nil
}
