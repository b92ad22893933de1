package failover

import (
	"testing"

	"github.com/patrol-dev/patrol/internal/etcdtest"
)

// TestMain runs the package's tests against a real embedded etcd, with a
// goroutine-leak check.
func TestMain(m *testing.M) { etcdtest.Main(m) }
