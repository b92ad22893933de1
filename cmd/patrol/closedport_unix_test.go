//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// closedTCP returns a loopback port that refuses connections and stays
// refused until Close: a socket bound to it, without SO_REUSEADDR, that
// never listens. Nothing else can bind the port meanwhile, so a tcp check
// against it fails however many listeners other tests open.
func closedTCP() (target, error) {
	syscall.ForkLock.RLock() // no child inherits the socket between these two calls
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return target{}, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return target{}, fmt.Errorf("bind loopback: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return target{}, fmt.Errorf("getsockname: %w", err)
	}
	return target{Port: sa.(*syscall.SockaddrInet4).Port, stop: func() { syscall.Close(fd) }}, nil
}
