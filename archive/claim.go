package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/segvault/segvault/uploader"
)

// Partition claims (issue 16): on clusters whose metadata does not say who
// archives a partition (ZooKeeper era: no __cluster_metadata on the
// brokers' disks), the agents agree through one small object per partition,
// <prefix>v2/<cluster>/claims/<topic>/<part>.json, written only with
// conditional writes:
//
//   - acquire: create-only (If-None-Match: *); the winner archives;
//   - renew: the owner rewrites it with If-Match on the ETag it holds, every
//     TTL/3;
//   - take over: a standby that has seen the same ETag for a whole TTL on its
//     own clock (the owner missed about three renewals) rewrites it with
//     If-Match on that ETag; of several standbys at most one succeeds.
//
// Expiry is judged by observation, not by comparing the Expires field with
// the local clock, so clock skew between brokers cannot make a live claim
// look expired. A claim is a hint: two agents archiving the same partition
// stay safe (their keys differ, uploads are create-only), only wasteful.
// Every write carries a new Seq, so the body (and with it an S3 ETag, an
// MD5 of the body) never repeats.

// ClaimFormat and ClaimVersion identify a claim object. Bump the version
// when a field changes meaning; readers reject other versions.
const (
	ClaimFormat  = "segvault.claim"
	ClaimVersion = 1
)

// Claim is the body of a claim object.
type Claim struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Cluster   string `json:"cluster_id"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Broker    int32  `json:"broker"`
	// Nonce is random per acquisition by one agent process: a restarted
	// agent of the same broker recognises its predecessor's claim.
	Nonce    string    `json:"nonce"`
	Seq      int64     `json:"seq"`
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
	// Expires is Renewed + TTL on the owner's clock, for people (ls) only.
	Expires time.Time `json:"expires"`
	TTLMS   int64     `json:"ttl_ms"`
	// TakenFrom is the broker whose expired claim this one replaced, or -1.
	TakenFrom int32 `json:"taken_from"`
}

// DecodeClaim parses and checks a claim read from key.
func DecodeClaim(key string, data []byte) (*Claim, error) {
	var c Claim
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("claim %s: %w", key, err)
	}
	if c.Format != ClaimFormat || c.Version != ClaimVersion {
		return nil, fmt.Errorf("claim %s: format %q version %d, want %s version %d", key, c.Format, c.Version, ClaimFormat, ClaimVersion)
	}
	if c.TTLMS <= 0 {
		return nil, fmt.Errorf("claim %s: ttl_ms %d must be positive", key, c.TTLMS)
	}
	return &c, nil
}

// MaxClaimSize bounds how much of a claim object is read.
const MaxClaimSize = 64 << 10

// ClaimStatus is the outcome of one Claims.Tick for a partition.
type ClaimStatus struct {
	Owner     int32 // broker holding the claim (-1 if unknown after an error)
	Mine      bool  // this broker holds it: archive the partition
	Acquired  bool  // this tick created the claim
	Renewed   bool  // this tick renewed it
	TookOver  bool  // this tick replaced another broker's expired claim
	StandbyOn int32 // when !Mine: the owner being watched
}

// ClaimOps counts the store operations of claims (for the PUT overhead
// quoted in the closing note).
type ClaimOps struct {
	Puts, Reads int64
}

// Claims runs the claim protocol for one broker. Tick is safe for
// concurrent use on different partitions.
type Claims struct {
	r       uploader.BucketReader
	w       uploader.ConditionalWriter
	layout  Layout
	cluster string
	broker  int32
	ttl     time.Duration
	now     func() time.Time
	nonce   string

	mu    sync.Mutex
	parts map[string]*claimState
	ops   ClaimOps
}

type claimState struct {
	mu        sync.Mutex
	etag      string    // last ETag seen (or written)
	claim     *Claim    // its body
	seenSince time.Time // local time the etag was first seen
	checked   time.Time // last read or write
}

// NewClaims returns the claim protocol of broker for cluster. ttl is how
// long an unrenewed claim stays valid (renewals every ttl/3). now is the
// clock (time.Now when nil).
func NewClaims(r uploader.BucketReader, w uploader.ConditionalWriter, layout Layout, cluster string, broker int32, ttl time.Duration, now func() time.Time) (*Claims, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("claims: ttl %v must be positive", ttl)
	}
	if now == nil {
		now = time.Now
	}
	var n [8]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("claims: nonce: %w", err)
	}
	return &Claims{r: r, w: w, layout: layout, cluster: cluster, broker: broker, ttl: ttl, now: now,
		nonce: hex.EncodeToString(n[:]), parts: map[string]*claimState{}}, nil
}

// Ops returns the operations done so far.
func (c *Claims) Ops() ClaimOps {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

func (c *Claims) count(puts, reads int64) {
	c.mu.Lock()
	c.ops.Puts += puts
	c.ops.Reads += reads
	c.mu.Unlock()
}

func (c *Claims) state(key string) *claimState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.parts[key]
	if !ok {
		s = &claimState{}
		c.parts[key] = s
	}
	return s
}

// Tick advances the protocol for one partition: it acquires a missing
// claim, renews this broker's own when due, takes over another's after it
// has not changed for a TTL, and otherwise reports standby. It touches the
// store at most once per ttl/3 per partition (plus the write it decides
// on), so calling it every scan is cheap.
func (c *Claims) Tick(ctx context.Context, topic string, partition int32) (ClaimStatus, error) {
	key := c.layout.ClaimKey(c.cluster, topic, partition)
	s := c.state(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := c.now()
	interval := c.ttl / 3
	if s.claim != nil && c.mine(s.claim) {
		// The owner renews blind (If-Match on the ETag it wrote): no read
		// unless the write fails.
		if now.Sub(s.claim.Renewed) < interval {
			return c.status(s), nil
		}
		st, err := c.write(ctx, key, s, topic, partition, now, -1)
		if err == nil {
			st.Renewed = st.Mine
		}
		return st, err
	}
	if s.claim != nil && now.Sub(s.checked) < interval {
		return c.status(s), nil
	}
	if err := c.read(ctx, key, s, now); err != nil {
		return ClaimStatus{Owner: -1, StandbyOn: -1}, err
	}
	switch {
	case s.claim == nil:
		st, err := c.write(ctx, key, s, topic, partition, now, -1)
		if err == nil {
			st.Acquired = st.Mine
		}
		return st, err
	case c.mine(s.claim):
		return c.status(s), nil // (a state that was ours is handled above)
	case s.claim.Broker == c.broker:
		// Our broker's previous agent process: take it back at once.
		return c.write(ctx, key, s, topic, partition, now, -1)
	case now.Sub(s.seenSince) >= c.ttl:
		st, err := c.write(ctx, key, s, topic, partition, now, s.claim.Broker)
		if err == nil {
			st.TookOver = st.Mine
		}
		return st, err
	default:
		return c.status(s), nil
	}
}

func (c *Claims) mine(cl *Claim) bool { return cl.Broker == c.broker && cl.Nonce == c.nonce }

func (c *Claims) status(s *claimState) ClaimStatus {
	if s.claim == nil {
		return ClaimStatus{Owner: -1, StandbyOn: -1}
	}
	mine := c.mine(s.claim)
	st := ClaimStatus{Owner: s.claim.Broker, Mine: mine, StandbyOn: -1}
	if !mine {
		st.StandbyOn = s.claim.Broker
	}
	return st
}

// read refreshes s from the store: a missing claim clears it, a new ETag
// restarts the expiry observation.
func (c *Claims) read(ctx context.Context, key string, s *claimState, now time.Time) error {
	c.count(0, 1)
	rc, info, err := c.r.Get(ctx, key)
	if errors.Is(err, uploader.ErrNotFound) {
		s.claim, s.etag = nil, ""
		s.checked = now
		return nil
	}
	if err != nil {
		return fmt.Errorf("read claim: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, MaxClaimSize+1))
	err = errors.Join(err, rc.Close())
	if err != nil {
		return fmt.Errorf("read claim %s: %w", key, err)
	}
	if len(data) > MaxClaimSize {
		return fmt.Errorf("claim %s: larger than %d bytes", key, MaxClaimSize)
	}
	cl, err := DecodeClaim(key, data)
	if err != nil {
		return err
	}
	if info.ETag == "" {
		return fmt.Errorf("claim %s: the store returned no ETag", key)
	}
	if info.ETag != s.etag {
		s.etag, s.seenSince = info.ETag, now
	}
	s.claim = cl
	s.checked = now
	return nil
}

// write acquires (s.claim == nil: create-only), renews or takes over
// (If-Match on s.etag). Losing the race is not an error: the winner's claim
// is read back and reported.
func (c *Claims) write(ctx context.Context, key string, s *claimState, topic string, partition int32, now time.Time, takenFrom int32) (ClaimStatus, error) {
	next := Claim{
		Format: ClaimFormat, Version: ClaimVersion, Cluster: c.cluster, Topic: topic, Partition: partition,
		Broker: c.broker, Nonce: c.nonce, Seq: 1, Acquired: now.UTC(), Renewed: now.UTC(),
		Expires: now.Add(c.ttl).UTC(), TTLMS: c.ttl.Milliseconds(), TakenFrom: takenFrom,
	}
	if s.claim != nil {
		next.Seq = s.claim.Seq + 1
		if c.mine(s.claim) {
			next.Acquired, next.TakenFrom = s.claim.Acquired, s.claim.TakenFrom
		}
	}
	body, err := json.Marshal(next)
	if err != nil {
		return ClaimStatus{Owner: -1, StandbyOn: -1}, fmt.Errorf("claim %s: %w", key, err)
	}
	opts := uploader.PutOptions{ContentType: "application/json"}
	c.count(1, 0)
	var etag string
	if s.claim == nil {
		etag, err = c.w.CreateETag(ctx, key, body, opts)
	} else {
		etag, err = c.w.ReplaceIfMatch(ctx, key, body, s.etag, opts)
	}
	if err == nil {
		s.claim, s.etag, s.seenSince, s.checked = &next, etag, now, now
		return c.status(s), nil
	}
	lost := errors.Is(err, uploader.ErrExists) || errors.Is(err, uploader.ErrPreconditionFailed)
	// Lost the race, or the outcome is unknown (a transport error after the
	// server may have applied it): read what is there now.
	if rerr := c.read(ctx, key, s, now); rerr != nil {
		return ClaimStatus{Owner: -1, StandbyOn: -1}, errors.Join(fmt.Errorf("claim %s: %w", key, err), rerr)
	}
	if s.claim != nil && c.mine(s.claim) && s.claim.Seq == next.Seq &&
		bytes.Equal(mustJSON(s.claim), body) {
		return c.status(s), nil // our write did land
	}
	if lost {
		return c.status(s), nil
	}
	return c.status(s), fmt.Errorf("claim %s: %w", key, err)
}

func mustJSON(c *Claim) []byte {
	b, _ := json.Marshal(c)
	return b
}
