// Package workerbench holds Patrol's worker benchmarks: real `patrol
// scheduler` and `patrol worker` processes on an embedded etcd with fsync
// on, measured from submit to the batch summary.
//
//   - BenchmarkHTTPConcurrency1000: one worker at --concurrency 1000 runs
//     http checks against a slow local server; it measures tasks/s and the
//     worker's peak resident memory.
//   - BenchmarkExecVsXargs5000: one worker at --concurrency 64 runs the exec
//     check (/bin/true) for 5,000 hosts, against `xargs -P 64 -n 1
//     /bin/true` over the same 5,000 lines in the same run.
//
// Both print where the machine's CPU went (worker, its exec'd children,
// scheduler, and the test process, which hosts etcd), so that a figure
// below target says what limited it.
package workerbench
