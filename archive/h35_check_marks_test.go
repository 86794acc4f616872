package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segvault/segvault/uploader"
)

// TestH35CheckDeletionMarks: the objects a prune deletion mark names (data
// waiting for the delete delay) and the mark itself are a deletion in
// progress, reported as such by the checker, never as orphans; a mark that
// does not decode is corrupt.
func TestH35CheckDeletionMarks(t *testing.T) {
	ctx := context.Background()
	b := newTestLocal(t)
	l := NewLayout("")
	ref := SegmentRef{Cluster: "c", Topic: "t", Partition: 0, TopicID: NoTopicID, BaseOffset: 0, Broker: 1, ContentID: "0123456789abcdef"}
	data := l.DataKeyV2(l.SegmentDirV2(ref), "00000000000000000000.log")
	mustCreate(t, b, data, []byte("waiting for the delay"), uploader.PutOptions{})
	stray := l.DataKeyV2(l.SegmentDirV2(SegmentRef{Cluster: "c", Topic: "t", TopicID: NoTopicID, BaseOffset: 100, Broker: 1, ContentID: "fedcba9876543210"}), "00000000000000000100.log")
	mustCreate(t, b, stray, []byte("no manifest, no mark"), uploader.PutOptions{})
	mark := DeletionMark{Format: DeletionMarkFormat, Version: DeletionMarkVersion, MarkedAt: time.Unix(1e9, 0), Kind: "segment", Reason: "superseded", Keys: []string{data}, Bytes: 21}
	mb, _ := json.Marshal(mark)
	markKey := l.DeletionMarkKey("c", data)
	if err := b.Create(ctx, markKey, bytes.NewReader(mb), int64(len(mb)), uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	badKey := l.DeletionMarkKey("c", "other")
	if err := b.Create(ctx, badKey, bytes.NewReader([]byte("{")), 1, uploader.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := Check(ctx, b, l, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, r := range res {
		status[r.Path] = r.Status
	}
	for key, want := range map[string]string{markKey: "ok", badKey: "corrupt", stray: "orphan"} {
		if status[key] != want {
			t.Errorf("%s: status %q, want %q (all: %v)", key, status[key], want, status)
		}
	}
	if s, ok := status[data]; ok && s != "ok" {
		t.Errorf("data named by a deletion mark reported %q", s)
	}
}
