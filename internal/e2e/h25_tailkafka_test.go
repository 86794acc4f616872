package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segvault/segvault/agent"
	"github.com/segvault/segvault/internal/kafkatest"
	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/segment"
)

// h25WholePrefix is the end of the last complete batch of a live segment.
func h25WholePrefix(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := segment.NewReader(bytes.NewReader(data), int64(len(data)), path, segment.ReaderOptions{BaseOffset: -1})
	for r.Next() {
	}
	return data[:r.Pos()]
}

// TestH25TailRealKafka: a real broker whose segments never roll (default
// segment settings) and a quiet topic: the agent with a 1s tail interval
// captures every produced batch of the active segment, and of the KRaft
// metadata log, byte for byte; no chain restarts, no invalid batches.
func TestH25TailRealKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka")
	}
	ctx := context.Background()
	src := kafkatest.Start(t, kafkatest.Options{Version: kafkatest.DefaultVersion, Props: kafkatest.DefaultProps(kafkatest.DefaultVersion)})
	src.CreateTopic(t, "quiet", 1, nil)
	srv := miniotest.Start(t)
	b := s3Bucket(t, srv)
	metrics := agent.NewMetrics(nil)
	a := newAgent(t, b, agent.Config{LogDirs: []string{src.LogDir()}, ScanInterval: time.Second, TailInterval: time.Second}, metrics)
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx, nil) }()
	cl := src.Client(t, kgo.ProducerLinger(0))
	for i := 0; i < 12; i++ {
		var rs []*kgo.Record
		for j := 0; j < 1+i%4; j++ {
			rs = append(rs, &kgo.Record{Topic: "quiet", Value: []byte(fmt.Sprintf("record %d.%d", i, j))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	seg := filepath.Join(src.PartitionDir("quiet", 0), "00000000000000000000.log")
	want := h25WholePrefix(t, seg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, caps := h25ReadTails(t, b)
		chains := h25CheckChains(t, caps)
		if bytes.Equal(chains["quiet"], want) {
			// The metadata log keeps growing: its chain is a prefix of it.
			meta, _ := os.ReadFile(filepath.Join(src.LogDir(), "__cluster_metadata-0", "00000000000000000000.log"))
			if m := chains["__cluster_metadata"]; len(m) == 0 || !bytes.Equal(m, meta[:len(m)]) {
				t.Errorf("metadata log: chain of %d bytes is not a prefix of the %d-byte file", len(m), len(meta))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quiet-0: chain %d bytes, the segment's whole batches %d", len(chains["quiet"]), len(want))
		}
		time.Sleep(300 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"truncated", "inode", "rewritten", "offsets"} {
		if n := readCounter(metrics.TailRestarts.WithLabelValues(r)); n != 0 {
			t.Errorf("%v chain restarts (%s) on a healthy broker", n, r)
		}
	}
	if n := readCounter(metrics.TailSkipped.WithLabelValues("invalid_batch")); n != 0 {
		t.Errorf("%v invalid batches on a healthy broker", n)
	}
	t.Logf("real broker: %v captures committed, %v bytes", readCounter(metrics.TailCaptures), readCounter(metrics.TailBytes))
}
