//go:build linux

package schedfault

import (
	"os"
	"testing"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/proctest"
)

// TestMain starts the shared etcd member, runs the tests, checks for
// leaked goroutines (etcdtest) and removes the patrol binary (proctest).
func TestMain(m *testing.M) { os.Exit(proctest.Wrap(etcdtest.Wrap(m)).Run()) }
