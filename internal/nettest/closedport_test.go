package nettest

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// TestClosedPortRefuses: a connection to the port is refused until release.
func TestClosedPortRefuses(t *testing.T) {
	port, release, err := ClosedPort()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded, want connection refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
	}
}
