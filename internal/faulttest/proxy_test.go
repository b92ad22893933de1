//go:build linux

package faulttest

import (
	"testing"

	"github.com/patrol-dev/patrol/internal/nettest"
)

// newProxy forwards to an etcd endpoint with no delay, so that a test can
// partition one process from etcd with Hold and heal it with Release; it
// is closed when the test ends.
func newProxy(t *testing.T, target string) *nettest.Proxy {
	t.Helper()
	p, err := nettest.NewProxy(target, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
