//go:build linux

package faulttest

import (
	"net"
	"sync"
	"testing"
)

// proxy forwards TCP connections to an etcd endpoint and can partition
// them one way: while held, what clients send is not forwarded (it stays
// buffered, in order, in the proxy and the kernel) and is delivered when
// released. Replies from etcd still flow. This is a network that delays a
// process's writes, as a partition that heals does.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	held     bool
	released chan struct{} // closed when the hold ends
	closed   bool
	conns    []net.Conn
}

// newProxy listens on a free loopback port; it is closed when the test ends.
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Addr is the HOST:PORT clients dial.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Hold stops forwarding client-to-etcd bytes.
func (p *proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		p.held, p.released = true, make(chan struct{})
	}
}

// Release forwards what was held and everything after it.
func (p *proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held {
		p.held = false
		close(p.released)
	}
}

// gate blocks while the proxy is held.
func (p *proxy) gate() {
	p.mu.Lock()
	held, released := p.held, p.released
	p.mu.Unlock()
	if held {
		<-released
	}
}

func (p *proxy) accept() {
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
		p.wg.Go(func() { p.copy(u, c, true); shut() })
		p.wg.Go(func() { p.copy(c, u, false); shut() })
	}
}

// copy forwards src to dst; gated copies wait out a hold before writing.
func (p *proxy) copy(dst, src net.Conn, gated bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if gated {
				p.gate()
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.Release()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
