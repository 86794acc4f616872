package archive

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segvault/segvault/internal/miniotest"
	"github.com/segvault/segvault/uploader"
)

// h28Clock is a manual clock shared by the brokers of a test.
type h28Clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *h28Clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *h28Clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type h28Store interface {
	uploader.Bucket
	uploader.ConditionalWriter
}

func h28Claims(t *testing.T, b h28Store, broker int32, ttl time.Duration, clk *h28Clock) *Claims {
	t.Helper()
	c, err := NewClaims(b, b, Layout{Prefix: "sv/"}, "c1", broker, ttl, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func h28Tick(t *testing.T, c *Claims) ClaimStatus {
	t.Helper()
	st, err := c.Tick(context.Background(), "events", 0)
	if err != nil {
		t.Fatalf("broker %d: %v", c.broker, err)
	}
	return st
}

// The protocol on one store: acquire, standby, renew, takeover after the
// owner stops renewing, the old owner stepping down, a restarted agent of
// the owner taking its claim back, and exactly one winner of a race.
func h28ClaimProtocol(t *testing.T, newStore func(t *testing.T) h28Store) {
	const ttl = 90 * time.Second
	const scan = 30 * time.Second
	t.Run("AcquireRenewTakeover", func(t *testing.T) {
		b := newStore(t)
		clk := &h28Clock{t: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)}
		b1, b2, b3 := h28Claims(t, b, 1, ttl, clk), h28Claims(t, b, 2, ttl, clk), h28Claims(t, b, 3, ttl, clk)
		if st := h28Tick(t, b1); !st.Mine || !st.Acquired {
			t.Fatalf("b1: %+v", st)
		}
		for _, c := range []*Claims{b2, b3} {
			if st := h28Tick(t, c); st.Mine || st.StandbyOn != 1 {
				t.Fatalf("broker %d: %+v", c.broker, st)
			}
		}
		// Ten minutes of scans: b1 renews, nobody takes over.
		for range 20 {
			clk.add(scan)
			if st := h28Tick(t, b1); !st.Mine {
				t.Fatalf("b1 lost its claim: %+v", st)
			}
			for _, c := range []*Claims{b2, b3} {
				if st := h28Tick(t, c); st.Mine || st.TookOver {
					t.Fatalf("broker %d took a live claim: %+v", c.broker, st)
				}
			}
		}
		// b1 stops. Within TTL + 2 scans exactly one standby takes over.
		stopped := clk.now()
		var taker *Claims
		for taker == nil {
			clk.add(scan)
			if clk.now().Sub(stopped) > ttl+2*ttl/3+scan {
				t.Fatal("no takeover")
			}
			for _, c := range []*Claims{b2, b3} {
				st := h28Tick(t, c)
				if st.TookOver {
					if taker != nil {
						t.Fatal("two takeovers")
					}
					taker = c
				}
			}
		}
		took := clk.now().Sub(stopped)
		if took < ttl {
			t.Fatalf("took over after %v, before the TTL %v", took, ttl)
		}
		t.Logf("broker %d took over %v after the owner's last renewal (ttl %v, scan %v)", taker.broker, took, ttl, scan)
		other := b2
		if taker == b2 {
			other = b3
		}
		if st := h28Tick(t, other); st.Mine || st.StandbyOn != taker.broker {
			// other may still hold a cached view; after its next read it
			// must follow the new owner.
			clk.add(ttl / 3)
			if st = h28Tick(t, other); st.Mine || st.StandbyOn != taker.broker {
				t.Fatalf("broker %d: %+v", other.broker, st)
			}
		}
		// b1 comes back (same process): its renewal fails, it steps down.
		if st := h28Tick(t, b1); st.Mine || st.Owner != taker.broker {
			t.Fatalf("old owner: %+v", st)
		}
		// A restarted agent of the current owner takes its claim back at once.
		restarted := h28Claims(t, b, taker.broker, ttl, clk)
		if st := h28Tick(t, restarted); !st.Mine {
			t.Fatalf("restarted owner: %+v", st)
		}
		clk.add(ttl / 3)
		if st := h28Tick(t, taker); st.Mine {
			t.Fatalf("the replaced process still thinks it owns the claim: %+v", st)
		}
	})
	t.Run("RaceOneWinner", func(t *testing.T) {
		b := newStore(t)
		clk := &h28Clock{t: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)}
		var mine atomic.Int32
		var wg sync.WaitGroup
		for id := int32(1); id <= 6; id++ {
			c := h28Claims(t, b, id, ttl, clk)
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := c.Tick(context.Background(), "events", 0)
				if err != nil {
					t.Error(err)
				}
				if st.Mine {
					mine.Add(1)
				}
			}()
		}
		wg.Wait()
		if mine.Load() != 1 {
			t.Fatalf("%d owners", mine.Load())
		}
	})
	t.Run("OpsPerHour", func(t *testing.T) {
		b := newStore(t)
		clk := &h28Clock{t: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)}
		for _, ttl := range []time.Duration{90 * time.Second, 15 * time.Minute} {
			owner, standby := h28Claims(t, b, 1, ttl, clk), h28Claims(t, b, 2, ttl, clk)
			part := int32(ttl / time.Second)
			for i := 0; i < int(time.Hour/scan); i++ {
				for _, c := range []*Claims{owner, standby} {
					if _, err := c.Tick(context.Background(), "events", part); err != nil {
						t.Fatal(err)
					}
				}
				clk.add(scan)
			}
			o, s := owner.Ops(), standby.Ops()
			t.Logf("ttl %v, scan %v: per claim per hour the owner did %d PUTs and %d reads, a standby %d PUTs and %d reads",
				ttl, scan, o.Puts, o.Reads, s.Puts, s.Reads)
			if want := int64(time.Hour/(ttl/3)) + 1; o.Puts > want || s.Puts != 0 {
				t.Fatalf("owner %d PUTs (want <= %d), standby %d", o.Puts, want, s.Puts)
			}
		}
	})
}

func TestH28ClaimsLocal(t *testing.T) {
	h28ClaimProtocol(t, func(t *testing.T) h28Store {
		l, err := uploader.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestH28ClaimsS3(t *testing.T) {
	srv := miniotest.Start(t)
	h28ClaimProtocol(t, func(t *testing.T) h28Store {
		return newTestS3(t, srv, srv.NewBucket(t), nil)
	})
}

func TestH28DecodeClaim(t *testing.T) {
	for name, body := range map[string]string{
		"not json":      "{",
		"wrong format":  `{"format":"segvault.segment","version":1,"ttl_ms":1}`,
		"wrong version": `{"format":"segvault.claim","version":2,"ttl_ms":1}`,
		"no ttl":        `{"format":"segvault.claim","version":1}`,
	} {
		if _, err := DecodeClaim("k", []byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
