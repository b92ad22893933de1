//go:build unix

package nettest

import (
	"fmt"
	"syscall"
)

// ClosedPort returns a loopback TCP port that refuses connections until
// release is called: a socket bound to it, without SO_REUSEADDR, that never
// listens. Nothing else can bind the port meanwhile, so a check against it
// is refused however many listeners other tests open and close.
func ClosedPort() (port int, release func(), err error) {
	syscall.ForkLock.RLock() // no child inherits the socket between these two calls
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return 0, nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("bind loopback: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("getsockname: %w", err)
	}
	return sa.(*syscall.SockaddrInet4).Port, func() { syscall.Close(fd) }, nil
}
