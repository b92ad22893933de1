package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/patrol-dev/patrol/internal/etcdtest"
)

// TestMain serves two roles. Run by `go test`, it starts the shared embedded
// etcd, runs the tests and checks for leaked goroutines. Re-executed by a
// script as `patrol`, it is the real command: main, with os.Args, its exit
// code and nothing of the test harness (no etcd starts in the child).
func TestMain(m *testing.M) {
	testscript.Main(etcdtest.Wrap(m), map[string]func(){
		"patrol": main,
	})
}
