//go:build !unix

package nettest

import (
	"fmt"
	"net"
)

// ClosedPort returns a loopback TCP port that was listening a moment ago
// and is now closed. Unlike the unix version it does not hold the port, so
// another listener may take it before release.
func ClosedPort() (port int, release func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, fmt.Errorf("listen on loopback: %w", err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port, func() {}, nil
}
