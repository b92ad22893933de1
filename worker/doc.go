// Package worker runs Patrol's stateless workers.
//
// A worker holds one etcd session (one lease, kept alive by the client).
// Its cost per task is set by round trips to etcd, so that a worker far
// from etcd keeps its slots as busy as one next to it (docs/architecture.md,
// "The claim pipeline"):
//
//   - The claim loop (claim.go) decides; it waits on no round trip but at
//     shutdown.
//     A listing goroutine lists ready keys of its zone in one transaction
//     of ranges over the units (a batch's part of a shard) it expects to
//     need (its assigned shards first, then the rest from a random one),
//     through a queue.ReadyCursor that resumes each unit past the keys it
//     listed, skips units found empty until the next wake, does not hand a
//     key out twice while its claim is in flight, and shares each listing
//     between the active batches by their priority (the worker follows the
//     active-batch index and tells the cursor before each listing). What it finds is split
//     into groups of at most 64, each claimed in a transaction sent from
//     a goroutine of its own, up to the request limit at once; the next
//     listing goes out while they are in flight. The loop lists once a
//     quarter of its budget is free: --concurrency plus a claim-ahead of
//     as many tasks as its checks finish in three baseline round trips
//     (at most twice what its claims in flight can hold).
//   - Each claimed task waits for one of --concurrency slots and runs its
//     check under the batch's timeout. Each claim key is attached to the
//     worker's lease, so if the worker dies, etcd deletes all its claims
//     when the lease expires and the scheduler requeues those tasks.
//   - The committer (commit.go) commits outcomes in batches, several in
//     flight (up to the request limit), a group in one at a time. Each
//     commit compares the claim key's create revision with the one the
//     claim returned: if the claim is gone (lease expired, claim revoked,
//     the worker was paused past its TTL) the commit is rejected, counted
//     as a zombie completion and logged, and the committed state is
//     untouched.
//   - The request limit (limit.go) is a gradient limit on claims and on
//     commits in flight, following etcd's latency relative to the worker's
//     own baseline: a far etcd keeps the whole pipeline, a saturated one
//     gets fewer, larger transactions. It never lowers --concurrency.
//     Deadlines of the claim and commit path are the larger of
//     CallTimeout and four times the slowest recent listing, claim or
//     commit, capped at MaxCallTimeout (commits get twice that).
//   - A claimed task that waits longer than a quarter of its timeout (at
//     most 15s) for a slot is given back, due at once on the same attempt.
//
// The loop wakes on a watch of the wake key (bumped whenever tasks are
// made ready) and, as a safety net, once a
// second. When the session is lost, running checks are cancelled, nothing
// they produce is committed, and the worker opens a new session. When the
// worker's context ends it drains: it stops claiming, lets running checks
// finish for up to DrainTimeout, releases the claims of what did not run
// or finish so the scheduler requeues them at once, and revokes its lease.
package worker
