package nettest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// MaxDelay is the largest one-way delay a Proxy accepts: more than any
// link between datacenters, and enough to find what a timeout assumes.
const MaxDelay = 10 * time.Second

// Proxy forwards TCP connections from a loopback port to a target, as a
// network between Patrol and etcd would:
//
//   - Delay holds every chunk in each direction for a fixed one-way time,
//     measured from when the proxy read it. It is pipelined: later chunks
//     do not wait for earlier ones to be delivered, only behind them, so
//     bandwidth is kept and only latency grows (a round trip costs twice
//     the delay).
//   - Hold stops forwarding what clients send (it stays buffered, in
//     order, in the proxy and the kernel) until Release; replies still
//     flow. This is a partition that heals.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	delay    time.Duration
	held     bool
	released chan struct{} // closed when the hold ends
	closed   bool
	conns    []net.Conn
}

// NewProxy listens on a free loopback port and forwards to target
// (HOST:PORT) with the given one-way delay. Close stops it.
func NewProxy(target string, delay time.Duration) (*Proxy, error) {
	if err := checkDelay(delay); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on loopback: %w", err)
	}
	p := &Proxy{ln: ln, target: target, delay: delay}
	p.wg.Go(p.accept)
	return p, nil
}

func checkDelay(d time.Duration) error {
	if d < 0 || d > MaxDelay {
		return fmt.Errorf("proxy: one-way delay %s is out of range: give 0 to %s", d, MaxDelay)
	}
	return nil
}

// Addr is the HOST:PORT clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay changes the one-way delay for chunks read from now on.
func (p *Proxy) SetDelay(d time.Duration) error {
	if err := checkDelay(d); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
	return nil
}

// Hold stops forwarding client-to-target bytes.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		p.held, p.released = true, make(chan struct{})
	}
}

// Release forwards what was held and everything after it.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held {
		p.held = false
		close(p.released)
	}
}

// Close stops listening, drops every connection and waits for the
// proxy's goroutines. Safe to call more than once.
func (p *Proxy) Close() error {
	p.ln.Close()
	p.Release()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		var once sync.Once
		shut := func() { once.Do(func() { c.Close(); u.Close() }) }
		p.wg.Go(func() { p.pipe(u, c, true); shut() })
		p.wg.Go(func() { p.pipe(c, u, false); shut() })
	}
}

// chunk is bytes read from one side, due on the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe forwards src to dst: one goroutine reads and stamps chunks, this
// one delivers each when it is due. Gated pipes (client to target) also
// wait out a hold before each write.
func (p *Proxy) pipe(dst, src net.Conn, gated bool) {
	q := make(chan chunk, 1024)
	var reader sync.WaitGroup
	reader.Go(func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				d := p.delay
				p.mu.Unlock()
				q <- chunk{b: buf[:n], due: time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	})
	defer func() {
		src.Close() // unblocks the reader when dst fails first
		for range q {
		}
		reader.Wait()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for c := range q {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		if gated {
			p.gate()
		}
		if _, err := dst.Write(c.b); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
			return
		}
	}
}

// gate blocks while the proxy is held.
func (p *Proxy) gate() {
	p.mu.Lock()
	held, released := p.held, p.released
	p.mu.Unlock()
	if held {
		<-released
	}
}
