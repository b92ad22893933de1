package check

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/nettest"
)

// hostAt returns the inventory host for a "host:port" listener address, as
// the inventory would have parsed it.
func hostAt(t *testing.T, addr string) inventory.Host {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return inventory.Host{Name: addr, Address: host, Port: p}
}

// openPort returns the address of a TCP listener on loopback. Connections
// complete in the kernel's backlog, so nothing needs to accept them.
func openPort(t *testing.T, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// closedPort returns the address of a loopback port that refuses
// connections until the test ends, held so that no other listener takes it.
func closedPort(t *testing.T) string {
	t.Helper()
	port, release, err := nettest.ClosedPort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// skipWithoutIPv6 skips a test on machines without an IPv6 loopback.
func skipWithoutIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
}

func mustNew(t *testing.T, typ string, params map[string]string) Check {
	t.Helper()
	c, err := New(typ, params)
	if err != nil {
		t.Fatalf("New(%q, %v): %v", typ, params, err)
	}
	return c
}

// expect checks a Result's status and that its message starts with prefix.
func expect(t *testing.T, res Result, status Status, prefix string) {
	t.Helper()
	if res.Status != status || !strings.HasPrefix(res.Message, prefix) {
		t.Errorf("Result = %s %q, want %s %q...", res.Status, res.Message, status, prefix)
	}
	if res.Duration <= 0 {
		t.Errorf("Result.Duration = %v, want > 0", res.Duration)
	}
	if strings.ContainsAny(res.Message, "\r\n") {
		t.Errorf("Result.Message %q is not one line", res.Message)
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func mustListen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
