// Package proctest runs the real patrol binary as child processes, for the
// test packages that exercise Patrol as an operator runs it (faulttest,
// shardbench, workerbench). It is an ordinary package so that those
// packages can share it, but only tests import it.
//
// A package that uses it routes its tests through Wrap, which removes the
// built binary once they have run:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(proctest.Wrap(m)) }
//	func TestMain(m *testing.M) { os.Exit(proctest.Wrap(etcdtest.Wrap(m)).Run()) }
//
// Binary builds cmd/patrol once per test binary (CGO_ENABLED=0, as
// released); Build builds another main package of the module the same way
// (clusterfault's etcd member). Start runs `patrol --log-format json ARGS...` with a clean
// PATROL_* environment: the test process's own PATROL_* variables are
// dropped, PATROL_METRICS_ADDR is 127.0.0.1:0 (every role serves metrics,
// and children running side by side must not collide), and the caller's
// variables come last, so they override. The child's stdout is kept whole
// and its stderr line by line, so that a test can wait for a JSON log line
// (WaitLog, or AwaitLog for a line the process may exit before writing)
// rather than sleep. When the test ends the child is killed and
// reaped, and if the test failed the last lines it logged are printed.
//
// What it does not do: it knows nothing of etcd, prefixes or batches. Those
// are the calling package's, passed in as environment and arguments.
package proctest
