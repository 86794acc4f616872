package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sys/unix"

	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/segment"
)

// rollTime is when the segment after base was created: the new .log's
// birth time (statx), else its producer snapshot's mtime (written at the
// roll).
func rollTime(partDir string, next int64) (time.Time, error) {
	var st unix.Statx_t
	p := filepath.Join(partDir, segment.FormatName(next, segment.KindLog))
	if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_BTIME, &st); err == nil && st.Mask&unix.STATX_BTIME != 0 {
		return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec)), nil
	}
	fi, err := os.Stat(filepath.Join(partDir, segment.FormatName(next, segment.KindSnapshot)))
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// manifestBase extracts the base offset from a segment manifest key
// (.../segments/<base>/<broker>-<content>/manifest.json).
func manifestBase(key string) (int64, bool) {
	if !strings.HasSuffix(key, "/manifest.json") {
		return 0, false
	}
	f := strings.Split(key, "/")
	for i := 0; i+3 < len(f); i++ {
		if f[i] == "segments" {
			b, err := strconv.ParseInt(f[i+1], 10, 64)
			return b, err == nil
		}
	}
	return 0, false
}

func (h *harness) benchRollLatency(ctx context.Context) error {
	const settle = time.Second
	liveDir := filepath.Join(h.work, "logs-live")
	b, err := brokersim.Start(ctx, brokersim.Config{Dir: liveDir, NodeID: 1, SegmentBytes: 1 << 20, Seed: 21, ForgetRecords: true,
		Topics: []brokersim.TopicSpec{{Name: "live", Codec: "none", Idempotent: true, ValueBytes: 200}}})
	if err != nil {
		return err
	}
	defer b.Close()
	partDir := filepath.Join(liveDir, "live-0")
	bucket, err := h.newBucket(ctx, "latency")
	if err != nil {
		return err
	}
	d, err := h.startDaemon(ctx, liveDir, bucket, filepath.Join(h.work, "state-latency"),
		"--settle-time", settle.String(), "--scan-interval", "30s")
	if err != nil {
		return err
	}
	defer func() {
		if !d.exited() {
			d.stop()
		}
	}()
	if _, err := d.waitReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	// A live producer: about one 1 MiB roll every 3 seconds.
	stopProducer := b.RunProducer("live", 1500)
	seen := map[int64]time.Time{}
	deadline := time.Now().Add(time.Duration(h.sz.Rolls)*10*time.Second + 30*time.Second)
	cl := h.srv.Client()
	for len(seen) < h.sz.Rolls && time.Now().Before(deadline) && ctx.Err() == nil {
		// Both roots: v1/ and v2/ segment manifests (the v2 agent writes v2/).
		for oi := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err != nil {
				stopProducer()
				return oi.Err
			}
			if base, ok := manifestBase(oi.Key); ok {
				if _, dup := seen[base]; !dup {
					seen[base] = time.Now()
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	perr := stopProducer()
	m, merr := scrape(d.addr)
	if _, err := d.stop(); err != nil {
		return fmt.Errorf("agent: %w; stderr tail:\n%s", err, d.errb.String())
	}
	if perr != nil {
		return fmt.Errorf("producer: %w", perr)
	}
	if len(seen) < h.sz.Rolls {
		return fmt.Errorf("only %d of %d rolled segments archived before the deadline; agent stderr tail:\n%s", len(seen), h.sz.Rolls, d.errb.String())
	}
	bases, err := logBases(partDir)
	if err != nil {
		return err
	}
	var lats []float64
	var putSecs []float64
	var segBytes int64
	pb, err := h.newBucket(ctx, "latency-plain")
	if err != nil {
		return err
	}
	for base, at := range seen {
		i := slices.Index(bases, base)
		if i < 0 || i+1 >= len(bases) {
			continue
		}
		rt, err := rollTime(partDir, bases[i+1])
		if err != nil {
			return err
		}
		lats = append(lats, at.Sub(rt).Seconds())
		// Baseline: a plain PUT of the same files, one after the other.
		t0 := time.Now()
		for _, name := range []string{segment.FormatName(base, segment.KindLog), segment.FormatName(base, segment.KindIndex),
			segment.FormatName(base, segment.KindTimeIndex), segment.FormatName(base, segment.KindSnapshot), segment.FormatName(bases[i+1], segment.KindSnapshot)} {
			p := filepath.Join(partDir, name)
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			if name == segment.FormatName(base, segment.KindLog) {
				segBytes += fi.Size()
			}
			if _, err := cl.FPutObject(ctx, pb, fmt.Sprintf("%d/%s", base, name), p, minio.PutObjectOptions{}); err != nil {
				return err
			}
		}
		putSecs = append(putSecs, time.Since(t0).Seconds())
	}
	h.removeBucket(ctx, pb)
	h.removeBucket(ctx, bucket)
	if len(lats) == 0 {
		return fmt.Errorf("no roll could be timed")
	}
	slices.Sort(lats)
	hist := ""
	if merr == nil && m["segvault_agent_roll_to_archive_seconds_count"] > 0 {
		hist = fmt.Sprintf(" The agent's own histogram (from first seeing the segment rolled to commit) averaged %.2f s over %.0f segments.",
			m["segvault_agent_roll_to_archive_seconds_sum"]/m["segvault_agent_roll_to_archive_seconds_count"], m["segvault_agent_roll_to_archive_seconds_count"])
	}
	put := median(putSecs)
	h.rep.add(row{ID: "latency.roll_to_archive", Group: "latency", Name: "Roll → manifest in the bucket (median)", Dataset: fmt.Sprintf("brokersim live, %d rolls of ~1 MiB", len(lats)),
		Value: median(lats), Unit: "s", Baseline: "settle time + plain PUT of the segment's files", BaselineValue: settle.Seconds() + put, Better: "lower",
		Notes: fmt.Sprintf("`segvault agent` daemon with --settle-time %s (the rolled files must be unchanged that long) while brokersim keeps producing about 1,500 records/s; roll = birth time of the next segment's .log, archived = the manifest first seen by polling the bucket every 10 ms. Min %.2f s, max %.2f s. The plain PUT of a segment's files took %.3f s (median).%s",
			settle, lats[0], lats[len(lats)-1], put, hist),
		Extra: map[string]float64{"min_s": lats[0], "max_s": lats[len(lats)-1], "settle_s": settle.Seconds(), "plain_put_s": put,
			"segment_bytes_avg": float64(segBytes) / float64(len(lats))}})
	return nil
}
