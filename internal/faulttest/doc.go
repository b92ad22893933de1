// Package faulttest runs Patrol as an operator does, as separate processes
// on a real etcd, and injects real faults: SIGKILL of a worker mid-batch,
// SIGSTOP of a worker until its lease expires (a zombie), SIGKILL of the
// leading scheduler. The patrol binary is built once (internal/proctest);
// each test starts `patrol scheduler` and `patrol worker` children against
// the shared embedded etcd under a fresh key prefix, and waits on etcd
// watches and on the children's JSON log lines, never on sleeps.
//
// The tests are Linux-only (real signals) and are skipped with
// -short, since they build the binary.
package faulttest
