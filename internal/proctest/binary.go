package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// M is what Wrap takes and returns: a *testing.M, or a wrapper of one such
// as etcdtest.Wrap's (goleak.VerifyTestMain takes it too).
type M interface{ Run() int }

// build is the binary Binary builds, shared by the test binary's tests.
var build struct {
	sync.Mutex
	wrapped bool   // Wrap's Run is running the tests
	dir     string // made by the first Binary call, removed by Wrap's Run
	path    string
	err     error // the build failed; every later Binary call fails with it
}

// Wrap returns m with a Run that runs the tests and then removes the binary
// Binary built. Binary refuses to build unless the tests run through it.
func Wrap(m M) M { return wrapped{m} }

type wrapped struct{ m M }

func (w wrapped) Run() int {
	build.Lock()
	build.wrapped = true
	build.Unlock()
	code := w.m.Run()
	build.Lock()
	defer build.Unlock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// Binary builds cmd/patrol (CGO_ENABLED=0) into a temporary directory once
// per test binary and returns its path. It fails t if the build fails, or
// if the package's TestMain does not run its tests through Wrap.
func Binary(t testing.TB) string {
	t.Helper()
	build.Lock()
	if build.wrapped && build.path == "" && build.err == nil {
		build.path, build.err = buildPatrol()
	}
	wrapped, path, err := build.wrapped, build.path, build.err
	build.Unlock()
	if !wrapped {
		t.Fatal("proctest: Binary needs the package's TestMain to run its tests through proctest.Wrap, which removes the binary afterwards")
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// buildPatrol builds the binary into build.dir, which it makes. The caller
// holds build's lock.
func buildPatrol() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("proctest: go env GOMOD: %w", err)
	}
	if build.dir, err = os.MkdirTemp("", "patrol-proctest-*"); err != nil {
		return "", fmt.Errorf("proctest: %w", err)
	}
	bin := filepath.Join(build.dir, "patrol")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/patrol")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("proctest: go build ./cmd/patrol: %w\n%s", err, out)
	}
	return bin, nil
}
