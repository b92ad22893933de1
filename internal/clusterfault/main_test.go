//go:build linux

package clusterfault

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/patrol-dev/patrol/internal/proctest"
)

// TestMain runs the tests, checks for leaked goroutines and removes the
// binaries built (proctest): patrol and the etcd member.
func TestMain(m *testing.M) { goleak.VerifyTestMain(proctest.Wrap(m)) }
