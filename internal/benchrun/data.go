package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
)

// harness holds the run's state: the MinIO server, datasets and report.
type harness struct {
	o    options
	sz   sizes
	srv  *miniotest.Server
	rep  *report
	work string

	tpl         map[string][]byte // codec -> template batch stream (offsets from 0)
	metaProps   []byte            // meta.properties of the generated broker
	smallPart   string            // the brokersim partition dir copied into the small dataset
	tinyPart    string            // the brokersim partition dir hard-linked into the scan tree
	verifyFile  map[string]string // codec -> tiled verification segment
	logDirs     map[string]string // dataset name -> log dir
	archived    map[string]string // dataset name -> bucket holding the agent's archive of it
	bucketSeq   int
	bucketMu    sync.Mutex
	putPerMiB   float64 // plain PUT seconds per MiB (for the latency baseline)
	putPerMiBOK bool

	rcloneWarned bool
	rcloneVer    string
	rcloneBucket map[string]string // dataset name -> bucket holding rclone's copy of it (for the restore baseline)
}

// codecs the verification figures cover, in table order.
var verifyCodecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// Dataset names.
const (
	dsBigJSON   = "large-json"
	dsBigIncomp = "large-lz4+zstd"
	dsSmall     = "small-1MiB"
	// dsBigZstd is the producer-compressed data the agent stores as is
	// (zstd saves under 10% of its first chunk, so the v2 "auto" rule keeps
	// it): the zstd segment of dsBigIncomp alone, in its own log dir.
	dsBigZstd = "large-zstd"
)

func (h *harness) makeDatasets(ctx context.Context) error {
	gen := filepath.Join(h.work, "gen")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	tplRecords := map[string]int{"none": 24000, "lz4": 110000, "zstd": 250000, "gzip": 12000, "snappy": 20000}
	smallRecords := 76000 // 16 rolled 1 MiB segments and an active one
	if h.o.quick {
		tplRecords = map[string]int{"none": 20000, "lz4": 110000, "zstd": 250000, "gzip": 8000, "snappy": 12000}
	}
	t0 := time.Now()
	// Templates: plain (non-idempotent) producers, one segment per topic, so
	// their batches can be tiled with shifted offsets (see tile).
	wg.Add(1)
	go func() {
		defer wg.Done()
		var topics []brokersim.TopicSpec
		for _, c := range verifyCodecs {
			topics = append(topics, brokersim.TopicSpec{Name: "tpl-" + c, Codec: c, Records: tplRecords[c], ValueBytes: 200})
		}
		if _, err := brokersim.Generate(ctx, brokersim.Config{Dir: filepath.Join(gen, "tpl"), NodeID: 1, SegmentBytes: 1 << 30,
			Seed: 11, ForgetRecords: true, Topics: topics}); err != nil {
			fail(fmt.Errorf("brokersim templates: %w", err))
		}
	}()
	// The small-segment partition: an idempotent producer, 1 MiB segments.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := brokersim.Generate(ctx, brokersim.Config{Dir: filepath.Join(gen, "small"), NodeID: 1, SegmentBytes: 1 << 20,
			Seed: 12, ForgetRecords: true, Topics: []brokersim.TopicSpec{{Name: "small", Codec: "none", Idempotent: true,
				Records: smallRecords, ValueBytes: 200}}}); err != nil {
			fail(fmt.Errorf("brokersim small: %w", err))
		}
		// Tiny segments for the startup-scan tree: one batch per segment.
		if _, err := brokersim.Generate(ctx, brokersim.Config{Dir: filepath.Join(gen, "tiny"), NodeID: 1, SegmentBytes: 4096,
			Seed: 13, ForgetRecords: true, Topics: []brokersim.TopicSpec{{Name: "tiny", Codec: "none", Idempotent: true,
				Records: 10 * (h.sz.ScanSegments + 1), BatchRecords: 10, ValueBytes: 200}}}); err != nil {
			fail(fmt.Errorf("brokersim tiny: %w", err))
		}
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logf("   brokersim generated templates and partitions in %s", time.Since(t0).Round(100*time.Millisecond))
	var err error
	if h.metaProps, err = os.ReadFile(filepath.Join(gen, "tpl", index.MetaPropertiesFile)); err != nil {
		return err
	}
	h.tpl = map[string][]byte{}
	for _, c := range verifyCodecs {
		if h.tpl[c], err = concatSegments(filepath.Join(gen, "tpl", "tpl-"+c+"-0")); err != nil {
			return err
		}
	}
	h.smallPart = filepath.Join(gen, "small", "small-0")
	h.tinyPart = filepath.Join(gen, "tiny", "tiny-0")
	if n := countRolled(h.tinyPart); n < h.sz.ScanSegments {
		return fmt.Errorf("tiny partition has %d rolled segments, want %d", n, h.sz.ScanSegments)
	}

	// Verification files: each codec's template tiled to VerifyBytes.
	t0 = time.Now()
	h.verifyFile = map[string]string{}
	vdir := filepath.Join(h.work, "verify")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return err
	}
	for _, c := range verifyCodecs {
		p := filepath.Join(vdir, c+".log")
		n := h.sz.VerifyBytes
		if c == "none" {
			n = h.sz.ShallowBytes // shallow verify on a page-cached 1 GiB segment (full mode)
		}
		if _, _, err := tile(h.tpl[c], n, p); err != nil {
			return err
		}
		h.verifyFile[c] = p
	}
	// Large segments: compressible JSON, and producer-compressed lz4 + zstd.
	h.logDirs = map[string]string{}
	h.archived = map[string]string{}
	h.logDirs[dsBigJSON] = filepath.Join(h.work, "logs-large-json")
	h.logDirs[dsBigIncomp] = filepath.Join(h.work, "logs-large-incompressible")
	h.logDirs[dsBigZstd] = filepath.Join(h.work, "logs-large-zstd")
	for _, x := range []struct{ dir, topic, codec string }{
		{h.logDirs[dsBigJSON], "large-json", "none"},
		{h.logDirs[dsBigIncomp], "large-lz4", "lz4"},
		{h.logDirs[dsBigIncomp], "large-zstd", "zstd"},
		{h.logDirs[dsBigZstd], "large-zstd", "zstd"},
	} {
		if err := h.tiledPartition(x.dir, x.topic, h.tpl[x.codec], h.sz.BigSegmentBytes); err != nil {
			return err
		}
	}
	// Many small segments: copies of the brokersim partition.
	h.logDirs[dsSmall] = filepath.Join(h.work, "logs-small")
	if err := h.copyPartitions(h.logDirs[dsSmall], "small", h.smallPart, h.sz.SmallCopies); err != nil {
		return err
	}
	logf("   tiled and copied datasets in %s", time.Since(t0).Round(100*time.Millisecond))

	big := humanBytes(h.sz.BigSegmentBytes)
	if h.o.quick {
		big += " (quick mode; full mode: 1 GiB)"
	}
	for _, d := range []struct{ name, desc string }{
		{dsBigJSON, "one " + big + " segment of uncompressed JSON-like records (producer codec none), brokersim batches tiled to size"},
		{dsBigIncomp, "two " + big + " segments of producer-compressed batches (lz4, zstd), brokersim batches tiled to size"},
		{dsBigZstd, "the zstd segment of large-lz4+zstd alone (producer codec zstd: zstd level 1 saves under 10% of its first 4 MiB chunk, so format v2's auto rule stores it as is), in its own log dir"},
		{dsSmall, fmt.Sprintf("%d partitions × %d rolled 1 MiB segments written by brokersim (idempotent producer, codec none, real indexes and producer snapshots); the partitions are byte copies of one", h.sz.SmallCopies, countRolled(h.smallPart))},
	} {
		files, segs, err := rolledFiles(h.logDirs[d.name])
		if err != nil {
			return err
		}
		var n int64
		for _, f := range files {
			n += f.size
		}
		h.rep.dataset(dataset{Name: d.name, Description: d.desc, Segments: segs, Files: len(files), Bytes: n})
	}
	for _, c := range verifyCodecs {
		fi, err := os.Stat(h.verifyFile[c])
		if err != nil {
			return err
		}
		h.rep.dataset(dataset{Name: "verify-" + c, Description: fmt.Sprintf("one segment of producer codec %s: brokersim batches (%s template) tiled to size", c, humanBytes(int64(len(h.tpl[c])))), Segments: 1, Files: 1, Bytes: fi.Size()})
	}
	return nil
}

// concatSegments returns a partition's .log files concatenated in offset
// order: one continuous stream of batches.
func concatSegments(dir string) ([]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindLog && n.Suffix == "" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no data", dir)
	}
	return out, nil
}

// tile writes the template's batches again and again, each copy's base
// offsets shifted past the previous copy's (baseOffset is outside the
// batch CRC, so every batch stays valid), until the next batch would pass
// target bytes. It returns the bytes written and the next offset.
func tile(tpl []byte, target int64, path string) (int64, int64, error) {
	type pos struct{ at, size, base, next int64 }
	var bs []pos
	r := segment.NewReader(bytes.NewReader(tpl), int64(len(tpl)), "template", segment.ReaderOptions{BaseOffset: -1})
	for r.Next() {
		b := r.Batch()
		bs = append(bs, pos{b.Pos, b.Size(), b.BaseOffset, b.NextOffset()})
	}
	if r.Err() != nil {
		return 0, 0, fmt.Errorf("template: %w", r.Err())
	}
	if len(bs) == 0 || bs[0].base != 0 || bs[len(bs)-1].at+bs[len(bs)-1].size != int64(len(tpl)) {
		return 0, 0, errors.New("template must be whole batches starting at offset 0")
	}
	span := bs[len(bs)-1].next
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	w := bufio.NewWriterSize(f, 4<<20)
	buf := append([]byte(nil), tpl...)
	var written, next int64
	for k := int64(0); ; k++ {
		for _, b := range bs {
			binary.BigEndian.PutUint64(buf[b.at:], uint64(b.base+k*span))
		}
		if written+int64(len(buf)) <= target {
			if _, err := w.Write(buf); err != nil {
				f.Close()
				return 0, 0, err
			}
			written += int64(len(buf))
			next = (k + 1) * span
			continue
		}
		for _, b := range bs { // the last, partial copy
			if written+b.size > target {
				break
			}
			if _, err := w.Write(buf[b.at : b.at+b.size]); err != nil {
				f.Close()
				return 0, 0, err
			}
			written += b.size
			next = b.next + k*span
		}
		break
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return 0, 0, err
	}
	return written, next, nil
}

// newTopicID returns a random Kafka topic id (a v4 UUID in URL-safe base64).
func newTopicID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		s := base64.RawURLEncoding.EncodeToString(b[:])
		if index.ValidateTopicID(s) == nil && !strings.HasPrefix(s, "-") {
			return s
		}
	}
}

// tiledPartition lays out <logDir>/<topic>-0 as a broker would after a
// roll: the tiled segment with its rebuilt .index and .timeindex, the
// producer snapshot written at the roll, and an empty active segment.
func (h *harness) tiledPartition(logDir, topic string, tpl []byte, size int64) error {
	dir := filepath.Join(logDir, topic+"-0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := h.writeRoot(logDir); err != nil {
		return err
	}
	logPath := filepath.Join(dir, segment.FormatName(0, segment.KindLog))
	n, next, err := tile(tpl, size, logPath)
	if err != nil {
		return err
	}
	f, err := os.Open(logPath)
	if err != nil {
		return err
	}
	res, err := index.Rebuild(bufio.NewReaderSize(f, 1<<20), n, logPath, index.RebuildOptions{})
	f.Close()
	if err != nil {
		return fmt.Errorf("rebuild indexes of %s: %w", logPath, err)
	}
	var epoch int32
	if len(tpl) > 16 {
		epoch = int32(binary.BigEndian.Uint32(tpl[12:16]))
	}
	for name, data := range map[string][]byte{
		segment.FormatName(0, segment.KindIndex):       res.OffsetIndex,
		segment.FormatName(0, segment.KindTimeIndex):   res.TimeIndex,
		segment.FormatName(next, segment.KindSnapshot): index.EncodeProducerSnapshot(nil),
		segment.FormatName(next, segment.KindLog):      {},
		index.PartitionMetadataFile:                    index.FormatPartitionMetadata(newTopicID()),
		index.LeaderEpochCheckpointFile:                index.FormatLeaderEpochCheckpoint([]index.EpochEntry{{Epoch: epoch, StartOffset: 0}}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeRoot writes a log dir's meta.properties (the generated broker's).
func (h *harness) writeRoot(logDir string) error {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(logDir, index.MetaPropertiesFile), h.metaProps, 0o644)
}

// memFile is a file held in memory for copying: data up to its last
// non-zero byte, and its full (possibly sparse) size.
type memFile struct {
	name  string
	data  []byte
	size  int64
	mtime time.Time
}

func loadDir(dir string) ([]memFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []memFile
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		end := len(b)
		for end > 0 && b[end-1] == 0 {
			end--
		}
		out = append(out, memFile{name: e.Name(), data: b[:end], size: int64(len(b)), mtime: fi.ModTime()})
	}
	return out, nil
}

// copyPartitions writes n byte copies of the partition dir src as
// <logDir>/<topic>-0 .. -(n-1), keeping sparse files sparse and mtimes.
func (h *harness) copyPartitions(logDir, topic, src string, n int) error {
	if err := h.writeRoot(logDir); err != nil {
		return err
	}
	files, err := loadDir(src)
	if err != nil {
		return err
	}
	for p := 0; p < n; p++ {
		dir := filepath.Join(logDir, fmt.Sprintf("%s-%d", topic, p))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, mf := range files {
			path := filepath.Join(dir, mf.name)
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			_, err = f.Write(mf.data)
			if err == nil && int64(len(mf.data)) < mf.size {
				err = f.Truncate(mf.size)
			}
			if err = errors.Join(err, f.Close()); err != nil {
				return err
			}
			if err := os.Chtimes(path, mf.mtime, mf.mtime); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkPartitions hard-links the files of src into n partition dirs spread
// over topics of perTopic partitions each (t0000-0 ... ).
func linkPartitions(logDir, src string, n, perTopic int) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	for p := 0; p < n; p++ {
		dir := filepath.Join(logDir, fmt.Sprintf("t%04d-%d", p/perTopic, p%perTopic))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, name := range names {
			if err := os.Link(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fileEntry is one file the agent archives (and a baseline uploads).
type fileEntry struct {
	path string
	key  string // <partition dir>/<file name>
	size int64
}

// rolledFiles lists what the agent archives in a log dir, as it decides
// it: for every segment below a partition's active one, its .log,
// .index, .timeindex, .txnindex and the producer snapshots at its base and
// at the next segment's base, when they exist.
func rolledFiles(logDir string) ([]fileEntry, int, error) {
	ents, err := os.ReadDir(logDir)
	if err != nil {
		return nil, 0, err
	}
	var out []fileEntry
	segs := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dn, ok := segment.ParseDirName(e.Name())
		if !ok || dn.Suffix != "" {
			continue
		}
		dir := filepath.Join(logDir, e.Name())
		bases, err := logBases(dir)
		if err != nil {
			return nil, 0, err
		}
		for i := 0; i+1 < len(bases); i++ {
			segs++
			for _, name := range []string{
				segment.FormatName(bases[i], segment.KindLog),
				segment.FormatName(bases[i], segment.KindIndex),
				segment.FormatName(bases[i], segment.KindTimeIndex),
				segment.FormatName(bases[i], segment.KindTxnIndex),
				segment.FormatName(bases[i], segment.KindSnapshot),
				segment.FormatName(bases[i+1], segment.KindSnapshot),
			} {
				fi, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					continue
				}
				out = append(out, fileEntry{path: filepath.Join(dir, name), key: e.Name() + "/" + name, size: fi.Size()})
			}
		}
	}
	return out, segs, nil
}

func logBases(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range ents {
		if n, ok := segment.ParseFileName(e.Name()); ok && n.Kind == segment.KindLog && n.Suffix == "" {
			bases = append(bases, n.BaseOffset)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

func countRolled(partDir string) int {
	b, _ := logBases(partDir)
	return max(len(b)-1, 0)
}

// warm reads files so they are in the page cache (both sides of a
// comparison then start from the same, warm, state).
func warm(files []fileEntry) error {
	buf := make([]byte, 1<<20)
	for _, f := range files {
		fh, err := os.Open(f.path)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(io.Discard, fh, buf)
		fh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func totalSize(files []fileEntry) int64 {
	var n int64
	for _, f := range files {
		n += f.size
	}
	return n
}
