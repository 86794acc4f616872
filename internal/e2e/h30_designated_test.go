package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/kafkatest"
)

// TestH30DesignatedRatio: with archive-replicas=designated (issue 16) the three agents of a
// replication-factor-3 topic archive one copy: at most 1.15x one replica's rolled bytes.
// Then the agent of one partition's leader is SIGKILLed while the broker keeps serving: the
// standbys take its partitions over after the grace period, and the archive covers every
// replica's rolled data again with no gap.
func TestH30DesignatedRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka cluster")
	}
	h30DesignatedRatio(t, kafkatest.DefaultVersion)
}

// TestH30DesignatedRatio39 is the same on Kafka 3.9 (its metadata records' versions differ).
func TestH30DesignatedRatio39(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka cluster")
	}
	h30DesignatedRatio(t, kafkatest.SecondVersion)
}

func h30DesignatedRatio(t *testing.T, version string) {
	start := time.Now()
	e := h30Start(t, version, "--archive-replicas", "designated", "--takeover-grace", h30Grace.String())
	e.produce(t, 25)
	rolled := e.rolledAll(t, h30Topic, h30Partitions)
	took := e.waitArchived(t, 2*time.Minute, "one copy archived", h30AnyReplica(rolled, 1, 2, 3))
	// Standbys that would wrongly take over do so after the grace: wait it out.
	time.Sleep(h30Grace + 2*time.Second)
	cv := e.coverage(t, h30Topic)
	ratio, one := h30Ratio(cv, rolled)
	t.Logf("h30: archive-replicas=designated: archived %d .log bytes for one replica's %d rolled bytes: ratio %.3f (segment copies per broker %v; covered %v after the last produce)",
		cv.bytes, one, ratio, cv.copies, took.Round(time.Millisecond))
	if ratio > 1.15 {
		t.Errorf("ratio %.3f, want <= 1.15 with one designated archiver per partition", ratio)
	}
	if ratio < 0.99 {
		t.Errorf("ratio %.3f < 1: rolled data missing from the archive", ratio)
	}

	// Kill the agent of partition 0's leader (the broker stays up and keeps leading).
	parts := e.c.Partitions(t, h30Topic)
	leader := parts[0].Leader
	ledBy := map[int32]bool{}
	for _, p := range parts {
		if p.Leader == leader {
			ledBy[p.Partition] = true
		}
	}
	atKill := e.coverage(t, h30Topic)
	e.killAgent(leader)
	killedAt := time.Now()
	t.Logf("h30: SIGKILLed the agent of broker %d (leader of partitions %v) at %s", leader, ledBy, killedAt.UTC().Format("15:04:05.000"))
	e.produce(t, 15)
	producedAt := time.Now()
	rolled = e.rolledAll(t, h30Topic, h30Partitions)
	var others []int32
	for _, n := range e.c.Nodes() {
		if n.ID() != leader {
			others = append(others, n.ID())
		}
	}
	// The takeover begins when a standby archives a segment of the leader's partitions
	// beyond what the archive held at the kill.
	first := e.waitArchived(t, 2*time.Minute, "a standby begins the takeover", func(cv h30Coverage) error {
		for p := range ledBy {
			for _, id := range others {
				for _, r := range cv.ranges[id][p] {
					if r[0] >= atKill.end(-1, p) {
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no standby archived beyond %v yet", atKill.ranges[-1] != nil)
	})
	full := first + e.waitArchived(t, 2*time.Minute, "standbys took over", h30AnyReplica(rolled, others...))
	cv = e.coverage(t, h30Topic)
	for p := int32(0); p < h30Partitions; p++ {
		lim := int64(0)
		for _, id := range others {
			lim = max(lim, rolled[id][p].End)
		}
		if g := cv.gaps(-1, p, lim); len(g) > 0 {
			t.Errorf("partition %d: archive gaps %v below the standbys' rolled end %d", p, g, lim)
		}
	}
	ratio, one = h30Ratio(cv, rolled)
	t.Logf("h30: agent kill: takeover began %v and covered every partition without a gap %v after the last produce (%s; grace %v); ratio now %.3f (%d/%d bytes, copies per broker %v)",
		first.Round(time.Millisecond), full.Round(time.Millisecond), producedAt.UTC().Format("15:04:05.000"), h30Grace, ratio, cv.bytes, one, cv.copies)
	// The standbys' rolled segments are older than the grace soon after the last produce;
	// allow a scan, the settle time and a loaded machine on top.
	if limit := h30Grace + 10*time.Second; first > limit {
		t.Errorf("takeover began %v after the last produce, want <= %v (grace %v)", first, limit, h30Grace)
	}
	t.Logf("h30: test took %v", time.Since(start).Round(time.Millisecond))
}
