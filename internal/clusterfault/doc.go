// Package clusterfault is Patrol's fault suite against a real 3-member etcd
// cluster: each member a process of its own (etcdmember, a small main
// around etcd's embedded server), two `patrol scheduler` and three `patrol
// worker` processes given all three endpoints, and real faults: SIGKILL
// and restart of the etcd leader, SIGSTOP of the leader for 30 s, SIGKILL
// of a follower, every member killed for 10 s, a compaction every 0.2 s
// while the leading scheduler is frozen, and a quota filled until etcd
// raises NOSPACE.
//
// Each scenario starts a fresh cluster, submits a batch and injects its
// fault once a fifth of the results are in. A timeline follows every
// write through one watch per member (so a frozen member hides nothing)
// and dates each revision by its first arrival: from it come the batch
// time, the longest gap between result commits (the stall) and the
// longest time a host stayed running. After each scenario an invariant
// check reads etcd and `patrol results -o json`: every host one final
// result, every result key written once, nothing left claimed, running
// or pending, no host over --max-attempts, and the fence's rejections
// logged and counted alike.
//
// The suite asserts the invariants and what Patrol achieves today; issue
// 12's figures (recovery within 5 s of a frozen leader, no lease lost,
// batch time near the baseline) are printed as targets beside the
// measured figures, in one table at the end, also written to the file
// $CLUSTERFAULT_REPORT names (CI prints it).
//
// The tests are Linux-only (real signals) and skipped with -short.
package clusterfault
