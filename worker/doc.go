// Package worker runs Patrol's stateless workers.
//
// A worker holds one etcd session (one lease, kept alive by the client). Its
// claim loop lists ready keys, starting at a random shard so that workers
// spread out, and claims up to its free capacity (at most queue.MaxClaim) in
// one transaction, once a quarter of its slots are free; while checks
// finish faster than a claim's round trip, it waits (a few round trips at
// most) for the rest to free, so that fast checks go in full groups. Its
// listings resume in each shard past the keys it already listed (a
// queue.ReadyCursor), so they do not walk the tombstones of claimed tasks,
// and skip shards found empty until the next wake. Each claim key is
// attached to the worker's lease, so if the worker dies, etcd deletes all
// its claims when the lease expires and the scheduler requeues those
// tasks.
//
// A claimed task runs its check under a deadline. The result is committed in
// a transaction that compares the claim key's create revision with the one
// the claim returned: if the claim is gone (lease expired, claim revoked,
// the worker was paused past its TTL) the commit is rejected, counted as a
// zombie completion and logged, and the committed state is untouched.
//
// The loop wakes on a watch of new ready keys and, as a safety net, once a
// second. When the session is lost, running checks are cancelled, nothing
// they produce is committed, and the worker opens a new session. When the
// worker's context ends it cancels running checks, releases their claims so
// the scheduler requeues them at once, and revokes its lease.
package worker
