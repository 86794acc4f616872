package agent

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segvault/segvault/archive"
	"github.com/segvault/segvault/index"
	"github.com/segvault/segvault/internal/brokersim"
	"github.com/segvault/segvault/uploader"
)

const h28Cluster = "h28ClusterAAAAAAAAAAAA"

// h28MetaRecord frames a metadata record value: frame 1, api key, version.
func h28MetaRecord(key, ver byte, body ...[]byte) []byte {
	v := []byte{1, key, ver}
	for _, b := range body {
		v = append(v, b...)
	}
	return v
}

func h28BE32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

func h28CompactI32(a ...int32) []byte {
	b := binary.AppendUvarint(nil, uint64(len(a)+1))
	for _, v := range a {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	return b
}

// h28MetadataLog writes __cluster_metadata-0/00000000000000000000.log in
// dir: one uncompressed v2 batch holding the given record values.
func h28MetadataLog(t *testing.T, dir string, values [][]byte) {
	t.Helper()
	var recs []byte
	for i, v := range values {
		var body []byte
		body = append(body, 0)                          // attributes
		body = binary.AppendVarint(body, 0)             // timestamp delta
		body = binary.AppendVarint(body, int64(i))      // offset delta
		body = binary.AppendVarint(body, -1)            // null key
		body = binary.AppendVarint(body, int64(len(v))) // value
		body = append(body, v...)
		body = binary.AppendVarint(body, 0) // headers
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	ts := time.Now().UnixMilli()
	b := binary.BigEndian.AppendUint64(nil, 0) // base offset
	b = binary.BigEndian.AppendUint32(b, 0)    // length, set below
	b = binary.BigEndian.AppendUint32(b, 1)    // partition leader epoch
	b = append(b, 2)                           // magic
	b = binary.BigEndian.AppendUint32(b, 0)    // crc, set below
	b = binary.BigEndian.AppendUint16(b, 0)    // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)-1))
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // producer id -1
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	md := filepath.Join(dir, index.MetadataDirName)
	if err := os.MkdirAll(md, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(md, "00000000000000000000.log"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// h28Metadata: topic "t" with p0 replicas [1 2 3] led by 2, p1 replicas
// [3 1 2] without a leader (broker 3 fenced: broker 1 is the first live).
func h28Metadata() [][]byte {
	id := index.TopicID{0xab, 1}
	topic := h28MetaRecord(index.MetaTopic, 0, []byte{2, 't'}, id[:], []byte{0})
	part := func(p int32, replicas []int32, leader int32) []byte {
		return h28MetaRecord(index.MetaPartition, 0, h28BE32(p), id[:], h28CompactI32(replicas...), h28CompactI32(replicas...),
			h28CompactI32(), h28CompactI32(), h28BE32(leader), h28BE32(3), h28BE32(4), []byte{0})
	}
	broker := func(b int32, fenced byte) []byte {
		return h28MetaRecord(index.MetaRegisterBroker, 0, h28BE32(b), make([]byte, 16), make([]byte, 8), []byte{1, 1, 0, fenced, 0})
	}
	return [][]byte{broker(1, 0), broker(2, 0), broker(3, 1), topic, part(0, []int32{1, 2, 3}, 2), part(1, []int32{3, 1, 2}, -1)}
}

type h28Broker struct {
	id  int32
	dir string
	cfg Config
}

func h28Brokers(t *testing.T) []h28Broker {
	t.Helper()
	var out []h28Broker
	for id := int32(1); id <= 3; id++ {
		dir := filepath.Join(t.TempDir(), "logs")
		_, err := brokersim.Generate(context.Background(), brokersim.Config{Dir: dir, NodeID: id, ClusterID: h28Cluster, Seed: 28, SegmentBytes: 4 << 10,
			Topics: []brokersim.TopicSpec{{Name: "t", Partitions: 2, Records: 600, BatchRecords: 10}}})
		if err != nil {
			t.Fatal(err)
		}
		h28MetadataLog(t, dir, h28Metadata())
		cfg := Defaults()
		cfg.LogDirs, cfg.Bucket, cfg.StateDir, cfg.SettleTime, cfg.LowPriority = []string{dir}, "file://x", t.TempDir(), 0, false
		cfg.ArchiveReplicas = ArchiveReplicasDesignated
		out = append(out, h28Broker{id: id, dir: dir, cfg: cfg})
	}
	return out
}

func h28Run(t *testing.T, b uploader.Bucket, cfg Config) *PassReport {
	t.Helper()
	a, err := New(context.Background(), cfg, NewArchive(b, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// h28Archived returns, per partition, the brokers whose manifests are in
// the bucket and the merged offset ranges they cover.
func h28Archived(t *testing.T, b uploader.Bucket) map[int32]map[int32][]OffsetRange {
	t.Helper()
	out := map[int32]map[int32][]OffsetRange{}
	err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if _, k, ok := archive.GuessKey(oi.Key); !ok || k.Kind != archive.KeySegmentManifest {
			return nil
		}
		data, err := uploader.ReadAll(context.Background(), b, oi.Key, archive.MaxManifestSize)
		if err != nil {
			return err
		}
		m, err := archive.DecodeSegmentManifest(oi.Key, data)
		if err != nil {
			return err
		}
		if out[m.Partition] == nil {
			out[m.Partition] = map[int32][]OffsetRange{}
		}
		out[m.Partition][m.BrokerID] = append(out[m.Partition][m.BrokerID], OffsetRange{m.BaseOffset, m.NextSegmentBase})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// h28Rolled returns the offsets a broker's rolled segments of t-p cover.
func h28Rolled(t *testing.T, dir string, p int32) OffsetRange {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "t-"+string(rune('0'+p))))
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			var v int64
			for _, c := range strings.TrimSuffix(e.Name(), ".log") {
				v = v*10 + int64(c-'0')
			}
			bases = append(bases, v)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return OffsetRange{bases[0], bases[len(bases)-1]}
}

// With archive-replicas=designated and the cluster's KRaft metadata on each
// disk, each partition is archived once, by its designated broker, and
// completely.
func TestH28DesignatedOneCopy(t *testing.T) {
	brokers := h28Brokers(t)
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range brokers {
		rep := h28Run(t, b, br.cfg)
		t.Logf("broker %d: %+v", br.id, *rep)
	}
	got := h28Archived(t, b)
	for p, want := range map[int32]int32{0: 2, 1: 1} {
		if len(got[p]) != 1 || got[p][want] == nil {
			t.Fatalf("p%d archived by %v, want only broker %d", p, keysOf(got[p]), want)
		}
		cov := mergeRanges(got[p][want])
		rolled := h28Rolled(t, brokers[want-1].dir, p)
		if len(cov) != 1 || cov[0] != rolled {
			t.Fatalf("p%d: archive covers %v, the designated broker rolled %v", p, cov, rolled)
		}
	}
	// Mode all archives every replica.
	b2, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range brokers {
		cfg := br.cfg
		cfg.ArchiveReplicas = ArchiveReplicasAll
		cfg.StateDir = t.TempDir()
		h28Run(t, b2, cfg)
	}
	if got := h28Archived(t, b2); len(got[0]) != 3 || len(got[1]) != 3 {
		t.Fatalf("mode all: %v %v", keysOf(got[0]), keysOf(got[1]))
	}
}

// The designated broker's agent is down: after the grace a standby takes
// its partition over, without a gap, and the next standby finds it covered.
func TestH28DesignatedTakeover(t *testing.T) {
	brokers := h28Brokers(t)
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} { // broker 2 (p0's leader) never runs
		cfg := brokers[i].cfg
		cfg.TakeoverGrace = time.Millisecond
		time.Sleep(5 * time.Millisecond)
		h28Run(t, b, cfg)
	}
	got := h28Archived(t, b)
	if len(got[0]) != 1 || got[0][1] == nil {
		t.Fatalf("p0 archived by %v, want only broker 1 (took over)", keysOf(got[0]))
	}
	cov := mergeRanges(got[0][1])
	if rolled := h28Rolled(t, brokers[0].dir, 0); len(cov) != 1 || cov[0] != rolled {
		t.Fatalf("p0: archive covers %v, want %v", cov, rolled)
	}
	if len(got[1]) != 1 || got[1][1] == nil {
		t.Fatalf("p1 archived by %v, want broker 1", keysOf(got[1]))
	}
}

func keysOf[V any](m map[int32]V) []int32 {
	var k []int32
	for id := range m {
		k = append(k, id)
	}
	sort.Slice(k, func(i, j int) bool { return k[i] < k[j] })
	return k
}

// ZooKeeper-era layout (no metadata log on the disks): bucket claims decide.
// Each partition is archived by one broker; when the owner's agent stops,
// another takes the claim over after the TTL and archives without a gap.
func TestH28DesignatedClaims(t *testing.T) {
	brokers := h28Brokers(t)
	for i := range brokers {
		if err := os.RemoveAll(filepath.Join(brokers[i].dir, index.MetadataDirName)); err != nil {
			t.Fatal(err)
		}
		brokers[i].cfg.ScanInterval = 100 * time.Millisecond
		brokers[i].cfg.ClaimTTL = 300 * time.Millisecond
	}
	b, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range brokers {
		h28Run(t, b, br.cfg)
	}
	got := h28Archived(t, b)
	owners := map[int32]int32{}
	for p := int32(0); p < 2; p++ {
		if len(got[p]) != 1 {
			t.Fatalf("p%d archived by %v, want one broker", p, keysOf(got[p]))
		}
		for id, rs := range got[p] {
			owners[p] = id
			if cov := mergeRanges(rs); len(cov) != 1 || cov[0] != h28Rolled(t, brokers[id-1].dir, p) {
				t.Fatalf("p%d: broker %d archived %v", p, id, cov)
			}
		}
	}
	claims := 0
	if err := b.List(context.Background(), "", func(oi uploader.ObjectInfo) error {
		if strings.Contains(oi.Key, "/claims/") {
			claims++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if claims != 2 {
		t.Fatalf("%d claim objects, want 2", claims)
	}
	t.Logf("claim owners: %v", owners)

	// A fresh archive: broker 1's agent takes both claims, then stops; the
	// others take over once the claims have not changed for a TTL.
	b2, err := uploader.NewLocal(filepath.Join(t.TempDir(), "archive2"))
	if err != nil {
		t.Fatal(err)
	}
	// Broker 1 claims the partitions (archiving them) and is never run again.
	first := brokers[0].cfg
	first.StateDir = t.TempDir()
	h28Run(t, b2, first)
	// Its claims expire (never renewed) and broker 2 takes them over.
	cfg2 := brokers[1].cfg
	cfg2.StateDir = t.TempDir()
	a2, err := New(context.Background(), cfg2, NewArchive(b2, archive.NewEncoder(archive.EncoderOptions{}), archive.EncodeOptions{Compression: archive.CompressionNone}),
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := a2.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		owned := 0
		for p := int32(0); p < 2; p++ {
			data, err := uploader.ReadAll(context.Background(), b2, archive.NewLayout("").ClaimKey(h28Cluster, "t", p), archive.MaxClaimSize)
			if err != nil {
				t.Fatal(err)
			}
			c, err := archive.DecodeClaim("claim", data)
			if err != nil {
				t.Fatal(err)
			}
			if c.Broker == 2 && c.TakenFrom == 1 {
				owned++
			}
		}
		if owned == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("broker 2 did not take the expired claims over")
		}
		time.Sleep(cfg2.ScanInterval)
	}
}
