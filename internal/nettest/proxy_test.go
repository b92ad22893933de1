package nettest

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// echo serves one line-echo server on loopback and records, for each line,
// when it arrived.
func echo(t *testing.T) (addr string, arrived <-chan time.Time) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan time.Time, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			ch <- time.Now()
			if _, err := c.Write([]byte(line)); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), ch
}

// TestProxyDelaysEachWayAndPipelines: a round trip through the proxy takes
// at least twice the one-way delay, and lines written back to back all
// reach the server before the first reply is back: chunks in flight do
// not wait for each other.
func TestProxyDelaysEachWayAndPipelines(t *testing.T) {
	target, arrived := echo(t)
	const delay = 400 * time.Millisecond
	p, err := NewProxy(target, delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	const lines = 10
	for i := range lines {
		if _, err := c.Write([]byte(strings.Repeat("x", i+1) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(c)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	rtt := time.Since(start)
	if first != "x\n" {
		t.Fatalf("first reply %q, want %q", first, "x\n")
	}
	if rtt < 2*delay {
		t.Fatalf("round trip took %s, below twice the one-way delay %s", rtt, delay)
	}
	var last time.Time
	for range lines {
		last = <-arrived
	}
	if last.Sub(start) >= rtt {
		t.Fatalf("the %dth line reached the server %s after the first write, after the first reply (%s): writes were not pipelined", lines, last.Sub(start), rtt)
	}
	for i := 1; i < lines; i++ {
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Repeat("x", i+1) + "\n"; got != want {
			t.Fatalf("reply %d: %q, want %q (order lost)", i, got, want)
		}
	}
}

// TestProxyHoldKeepsWritesUntilRelease: nothing a client writes reaches
// the server while held; all of it does, in order, once released.
func TestProxyHoldKeepsWritesUntilRelease(t *testing.T) {
	target, arrived := echo(t)
	p, err := NewProxy(target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte("before\n"))
	if got, _ := r.ReadString('\n'); got != "before\n" {
		t.Fatalf("reply %q before the hold", got)
	}
	<-arrived
	p.Hold()
	c.Write([]byte("during\n"))
	// The reply cannot come while held; a read deadline proves nothing
	// arrived in that time, not that nothing ever would.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if got, err := r.ReadString('\n'); err == nil {
		t.Fatalf("reply %q while the proxy was held", got)
	}
	c.SetReadDeadline(time.Time{})
	p.Release()
	if got, err := r.ReadString('\n'); err != nil || got != "during\n" {
		t.Fatalf("after release: %q, %v", got, err)
	}
}

// TestProxyRefusesDelayOutOfRange: a negative or huge delay says what to
// pass.
func TestProxyRefusesDelayOutOfRange(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, MaxDelay + time.Second} {
		if _, err := NewProxy("127.0.0.1:1", d); err == nil || !strings.Contains(err.Error(), "give 0 to") {
			t.Errorf("delay %s: err %v, want one that says the range", d, err)
		}
	}
}
