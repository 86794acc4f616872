package uploader

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestS3StalledServerFails: a server that accepts connections and then never
// reads or answers makes a PUT fail after StallTimeout of silence, instead
// of blocking for ever (its body fills the socket buffers, and no response
// timeout applies while the request is still being written).
func TestS3StalledServerFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read, never answer
			mu.Unlock()
		}
	}()
	s, err := NewS3(S3Options{Endpoint: "http://" + ln.Addr().String(), DisableTLS: true, Region: "us-east-1", Bucket: "stalled-bucket",
		PathStyle: true, AccessKey: "k", SecretKey: "secretsecret", RequestRetries: 1, StallTimeout: time.Second, PartSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte{7}, 32<<20)
	done := make(chan error, 1)
	go func() {
		done <- s.Create(context.Background(), "k", bytes.NewReader(body), int64(len(body)), PutOptions{})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a PUT to a server that never answers succeeded")
		}
		t.Logf("failed as it should: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("a PUT to a server that never reads is still blocked after 30s (StallTimeout 1s)")
	}
}
