package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/patrol-dev/patrol/internal/nettest"
)

// Loopback targets for checks to run against: real sockets, no fakes.

// target is a loopback port a check can be pointed at.
type target struct {
	Port int
	stop func()
}

// Close stops the target and waits for its goroutines.
func (t target) Close() { t.stop() }

// closedTCP returns a loopback port that refuses connections until Close,
// held so that no other test's listener takes it meanwhile.
func closedTCP() (target, error) {
	port, release, err := nettest.ClosedPort()
	if err != nil {
		return target{}, err
	}
	return target{Port: port, stop: release}, nil
}

// openTCP listens on a loopback port and accepts (and closes) every
// connection: a tcp check against it passes.
func openTCP() (target, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return target{}, fmt.Errorf("listen on loopback: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return // closed
			}
			conn.Close()
		}
	})
	return target{Port: l.Addr().(*net.TCPAddr).Port, stop: func() { l.Close(); wg.Wait() }}, nil
}

// openHTTP serves status on every path of a loopback port.
func openHTTP(status int) (target, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return target{}, fmt.Errorf("listen on loopback: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
		}),
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(l) }) // returns once Close is called
	return target{Port: l.Addr().(*net.TCPAddr).Port, stop: func() { srv.Close(); wg.Wait() }}, nil
}
