package check

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"
)

// outcome sorts a failed connection or request into fail (the host said no)
// and error (we could not find out), with a short reason for the message.
// parent is the context Run was given, to tell the caller's cancellation
// from a timeout; start is when Run began.
func outcome(parent context.Context, err error, start time.Time) (Status, string) {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return StatusFail, "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return StatusFail, "connection reset by peer"
	case errors.As(err, &certErr):
		return StatusFail, certErr.Error()
	case errors.Is(parent.Err(), context.Canceled):
		return StatusError, "cancelled"
	case errors.As(err, &dnsErr):
		return StatusError, dnsErr.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return StatusError, "timed out after " + time.Since(start).Round(time.Millisecond).String()
	}
	return StatusError, innermost(err)
}

// innermost strips the layers that repeat what the message already says
// ("Get \"http://...\": dial tcp 10.0.0.1:80: connect: ...").
func innermost(err error) string {
	for {
		switch e := err.(type) {
		case *url.Error:
			err = e.Err
		case *net.OpError:
			err = e.Err
		case *os.SyscallError:
			err = e.Err
		default:
			return err.Error()
		}
	}
}
