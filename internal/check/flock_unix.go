//go:build unix

package check

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on f, held until unlock, so that
// workers on one machine sharing a known_hosts file append in turn.
func lockFile(f *os.File) (unlock func(), err error) {
	fd := int(f.Fd())
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return func() { syscall.Flock(fd, syscall.LOCK_UN) }, nil
}
