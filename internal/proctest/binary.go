package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// M is what Wrap takes and returns: a *testing.M, or a wrapper of one such
// as etcdtest.Wrap's (goleak.VerifyTestMain takes it too).
type M interface{ Run() int }

// build holds the binaries Build builds, shared by the test binary's tests.
var build struct {
	sync.Mutex
	wrapped bool   // Wrap's Run is running the tests
	dir     string // made by the first Build call, removed by Wrap's Run
	bins    map[string]built
}

// built is one package's build: its path, or why it failed (every later
// Build of that package fails with it).
type built struct {
	path string
	err  error
}

// Wrap returns m with a Run that runs the tests and then removes the
// binaries Build built. Build refuses to build unless the tests run through
// it.
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
	return Build(t, "./cmd/patrol")
}

// Build builds the main package pkg, a path relative to the module root
// such as "./cmd/patrol", as Binary builds cmd/patrol: once per test binary,
// into the directory Wrap removes. It fails t as Binary does.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	build.Lock()
	b, done := build.bins[pkg]
	if build.wrapped && !done {
		b.path, b.err = buildPackage(pkg)
		if build.bins == nil {
			build.bins = map[string]built{}
		}
		build.bins[pkg] = b
	}
	wrapped := build.wrapped
	build.Unlock()
	if !wrapped {
		t.Fatal("proctest: Build needs the package's TestMain to run its tests through proctest.Wrap, which removes the binaries afterwards")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// buildPackage builds pkg into build.dir, which the first build makes.
// The caller holds build's lock.
func buildPackage(pkg string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("proctest: go env GOMOD: %w", err)
	}
	if build.dir == "" {
		if build.dir, err = os.MkdirTemp("", "patrol-proctest-*"); err != nil {
			return "", fmt.Errorf("proctest: %w", err)
		}
	}
	bin := filepath.Join(build.dir, path.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("proctest: go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}
