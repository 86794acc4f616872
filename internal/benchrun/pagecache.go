package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

const pageSize = 4096

// residency returns mincore's view of a file: one bool per page.
func residency(path string) ([]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(m)
	vec := make([]byte, (fi.Size()+pageSize-1)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return nil, fmt.Errorf("mincore %s: %w", path, errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out, nil
}

func residencyAll(paths []string) (map[string][]bool, error) {
	out := map[string][]bool{}
	for _, p := range paths {
		r, err := residency(p)
		if err != nil {
			return nil, err
		}
		out[p] = r
	}
	return out, nil
}

// compareResidency counts pages resident before and not after (evicted),
// and pages not resident before but resident after (left behind).
func compareResidency(before, after map[string][]bool) (total, residentBefore, evicted, leftBehind int) {
	for p, b := range before {
		a := after[p]
		for i := range b {
			total++
			ra := i < len(a) && a[i]
			if b[i] {
				residentBefore++
				if !ra {
					evicted++
				}
			} else if ra {
				leftBehind++
			}
		}
	}
	return
}

// brokerPattern is the "broker's" page-cache state every run starts from:
// each file dropped from the cache, then every other 256 KiB stripe read
// (as consumers reading parts of recent segments would leave it), with
// readahead off so exactly those pages are resident.
func brokerPattern(paths []string) error {
	const stripe = 256 << 10
	buf := make([]byte, stripe)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil { // written back first: dirty pages cannot be dropped
			err = unix.Fdatasync(int(f.Fd()))
		}
		if err == nil {
			err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
		if err == nil { // no readahead: exactly the stripes become resident
			err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		}
		for off := int64(0); err == nil && off < fi.Size(); off += 2 * stripe {
			_, err = f.ReadAt(buf, off)
			if err != nil && off+stripe >= fi.Size() {
				err = nil // short last stripe
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// readAndDropWhole is the naive alternative to the agent's policy: read
// the file, then POSIX_FADV_DONTNEED all of it.
func readAndDropWhole(paths []string) error {
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		for err == nil {
			_, err = f.Read(buf)
		}
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) benchPageCache(ctx context.Context) error {
	me, err := self()
	if err != nil {
		return err
	}
	// A log dir of a few of the small dataset's partitions (hard links:
	// the same inodes, so the same page-cache pages).
	logDir := filepath.Join(h.work, "logs-pagecache")
	if err := h.writeRoot(logDir); err != nil {
		return err
	}
	for p := 0; p < min(h.sz.PageCacheParts, h.sz.SmallCopies); p++ {
		src := filepath.Join(h.logDirs[dsSmall], fmt.Sprintf("small-%d", p))
		dst := filepath.Join(logDir, fmt.Sprintf("small-%d", p))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := os.Link(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	files, segs, err := rolledFiles(logDir)
	if err != nil {
		return err
	}
	var logs, lines []string
	for _, f := range files {
		lines = append(lines, f.path+"\t"+f.key)
		if strings.HasSuffix(f.path, ".log") {
			logs = append(logs, f.path)
		}
	}
	list := filepath.Join(h.work, "put-pagecache.txt")
	if err := writeList(list, lines); err != nil {
		return err
	}
	measure := func(action func() error) (total, before, evicted, left int, err error) {
		if err = brokerPattern(logs); err != nil {
			return
		}
		b, err := residencyAll(logs)
		if err != nil {
			return
		}
		if err = action(); err != nil {
			return
		}
		a, err := residencyAll(logs)
		if err != nil {
			return
		}
		total, before, evicted, left = compareResidency(b, a)
		return
	}

	// The agent, with its default page-cache policy (drop only what it brought in).
	ab, err := h.newBucket(ctx, "pagecache")
	if err != nil {
		return err
	}
	state := filepath.Join(h.work, "state-pagecache")
	total, before, evicted, left, err := measure(func() error {
		_, _, _, err := h.agentOnceAll(ctx, logDir, ab, state, segs)
		return err
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	h.removeBucket(ctx, ab)
	// Baseline 1: a plain upload of the same files (drops nothing).
	pb, err := h.newBucket(ctx, "pagecache-plain")
	if err != nil {
		return err
	}
	_, pBefore, pEvicted, pLeft, err := measure(func() error {
		_, err := h.runChild(ctx, me, "-child", "put", "-endpoint", h.srv.Endpoint(), "-bucket", pb, "-list", list, "-concurrency", "2")
		return err
	})
	if err != nil {
		return fmt.Errorf("plain put: %w", err)
	}
	h.removeBucket(ctx, pb)
	// Baseline 2: read, then drop whole files.
	_, wBefore, wEvicted, wLeft, err := measure(func() error { return readAndDropWhole(logs) })
	if err != nil {
		return fmt.Errorf("whole-file drop: %w", err)
	}
	ds := fmt.Sprintf("%d × 1 MiB segments of %s", segs, dsSmall)
	note := fmt.Sprintf("mincore over the %d pages of the %d rolled .log files; before each run every file is dropped from the cache and every other 256 KiB stripe read back, leaving %d pages resident (the \"broker's\" pages; plain-upload run %d, whole-file run %d). Pages read in and left resident: agent %d, plain upload %d, whole-file drop %d. Evicted by the plain upload: %d.",
		total, len(logs), before, pBefore, wBefore, left, pLeft, wLeft, pEvicted)
	h.rep.add(row{ID: "pagecache.evicted", Group: "pagecache", Name: "Broker pages evicted by the agent", Dataset: ds,
		Value: float64(evicted), Unit: "pages", Baseline: "read, then POSIX_FADV_DONTNEED of whole files", BaselineValue: float64(wEvicted), Better: "lower", Notes: note,
		Extra: map[string]float64{"pages_total": float64(total), "resident_before": float64(before), "agent_left_behind": float64(left),
			"plain_left_behind": float64(pLeft), "plain_evicted": float64(pEvicted), "whole_file_evicted": float64(wEvicted)}})
	h.rep.add(row{ID: "pagecache.left", Group: "pagecache", Name: "Pages the agent read in and left in the page cache", Dataset: ds,
		Value: float64(left), Unit: "pages", Baseline: "plain PutObject upload of the same files", BaselineValue: float64(pLeft), Better: "lower"})
	return nil
}
