//go:build linux

package faulttest

import (
	"os"
	"testing"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/proctest"
)

// TestMain starts the shared embedded etcd (etcdtest), runs the tests,
// checks for leaked goroutines and removes the built binary (proctest).
func TestMain(m *testing.M) { os.Exit(proctest.Wrap(etcdtest.Wrap(m)).Run()) }
