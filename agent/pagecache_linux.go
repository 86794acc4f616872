package agent

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residency records which pages of a file were in the page cache before the
// agent read it, so that afterwards it can drop only the pages it brought in
// and leave the broker's hot pages (consumers reading the tail) alone.
type residency struct {
	size int64
	vec  []byte // nil: unknown (mincore failed); then nothing is dropped
}

const pageSize = 4096

// residentPages snapshots the page-cache residency of f (mincore on a
// read-only mapping; mapping does not fault pages in).
func residentPages(f *os.File, size int64) residency {
	r := residency{size: size}
	if size <= 0 || size > 1<<40 {
		return r
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return r
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+pageSize-1)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return r
	}
	r.vec = vec
	return r
}

// dropNewPages advises the kernel to drop the runs of pages that were not
// resident before; it returns how many pages it asked to drop.
func dropNewPages(f *os.File, before residency) int64 {
	if before.vec == nil {
		return 0
	}
	var dropped int64
	start := -1
	flush := func(end int) {
		if start >= 0 {
			off := int64(start) * pageSize
			unix.Fadvise(int(f.Fd()), off, int64(end)*pageSize-off, unix.FADV_DONTNEED)
			dropped += int64(end - start)
			start = -1
		}
	}
	for i, v := range before.vec {
		if v&1 == 0 {
			if start < 0 {
				start = i
			}
		} else {
			flush(i)
		}
	}
	flush(len(before.vec))
	return dropped
}

// lowerPriority makes the process nice 10 and puts its I/O in the idle
// class, so the broker always wins contention for CPU and disk.
func lowerPriority() error {
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, 10); err != nil {
		return err
	}
	const ioprioClassIdle, ioprioWhoProcess, classShift = 3, 1, 13
	_, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, ioprioClassIdle<<classShift)
	if errno != 0 {
		return errno
	}
	return nil
}

// checkCacheVisibility warns once when the kernel hides page-cache
// residency: since Linux 5.2 mincore reports every page of a file as
// resident unless the caller could write it, so an agent that may only read
// Kafka's files cannot tell its own pages from the broker's and, to be safe,
// drops none.
func (a *Agent) checkCacheVisibility(f *os.File, r residency) {
	if len(r.vec) < 2 {
		return
	}
	for _, v := range r.vec {
		if v&1 == 0 {
			return // the kernel shows real residency
		}
	}
	if unix.Access(f.Name(), unix.W_OK) == nil {
		return // all pages really are resident
	}
	a.mu.Lock()
	warned := a.cacheBlindWarned
	a.cacheBlindWarned = true
	a.mu.Unlock()
	if !warned {
		a.metrics.CacheBlind.Set(1)
		a.log.Warn("the kernel hides page-cache residency from the agent (it cannot write Kafka's files: mincore since Linux 5.2), so it drops no pages after reading; see OPERATIONS.md", "file", f.Name())
	}
}
