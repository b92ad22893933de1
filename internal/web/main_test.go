package web_test

import (
	"os"
	"testing"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/proctest"
)

// TestMain starts the shared embedded etcd, runs the tests (the browser
// test builds and runs the patrol binary through proctest) and checks for
// leaked goroutines.
func TestMain(m *testing.M) { os.Exit(proctest.Wrap(etcdtest.Wrap(m)).Run()) }
