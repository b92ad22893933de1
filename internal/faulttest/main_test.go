//go:build linux

package faulttest

import (
	"fmt"
	"os"
	"testing"

	"github.com/patrol-dev/patrol/internal/etcdtest"
)

// TestMain starts the shared embedded etcd (etcdtest), runs the tests,
// checks for leaked goroutines and removes the built binary.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "patrol-faulttest-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faulttest:", err)
		os.Exit(1)
	}
	binDir = dir
	code := etcdtest.Wrap(m).Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
