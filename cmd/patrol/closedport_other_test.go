//go:build !unix

package main

import (
	"fmt"
	"net"
)

// closedTCP returns a loopback port that was listening a moment ago and is
// now closed. Unlike the unix version it does not hold the port, so another
// listener may take it.
func closedTCP() (target, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return target{}, fmt.Errorf("listen on loopback: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return target{Port: port, stop: func() {}}, nil
}
