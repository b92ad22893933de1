// Package queue is Patrol's data model in etcd: batches, tasks, claims and
// results, and every transaction that moves a task. It holds no state of
// its own; the scheduler and workers drive it.
//
// # Where a task is
//
// A task (one host of one batch) is always in exactly one place, and every
// move between places is one etcd transaction:
//
//	ready/<shard>/<batch>/<task>   claimable, with the attempt it will run as
//	delayed/<batch>/<task>         waiting out a retry backoff (NotBefore)
//	running/<group>                inside a claimed group's durable record
//	results/<batch>/<task>         finished for this round
//
// # State machine
//
//	         shard (leader)             claim (worker, 1 txn per group)
//	hosts ──────────────────► PENDING ─────────────────────────────► RUNNING
//	                            ▲  ▲                                   │
//	         promote (leader,   │  │ recover (leader): claim gone      │ commit (worker, fenced on the claim)
//	         backoff passed)    │  │ (lease expired, released,         │
//	                            │  │ revoked overdue) and attempts     ├──► ok
//	                            │  │                                   ├──► warn (passed, near a threshold; final, never retried)
//	                   RETRYING ┘  └─ left; otherwise ──► dead         ├──► fail (final unless --retry-failures)
//	                      ▲                                            ├──► dead (error, out of attempts)
//	                      └──────── error (or fail with               ├──► cancelled (batch cancelled while running)
//	                                --retry-failures), attempts left ─┘
//
//	PENDING / RETRYING ──► cancelled (patrol cancel) | skipped (--max-failures exceeded)
//	ok | fail | dead | cancelled | skipped ──► PENDING, round+1 (patrol retry)
//
// Pending, retrying and running are where the task's record is; the final
// statuses are its Result. A Result is committed once per round.
//
// ok and warn are passes: warn is the check's verdict that the host passed
// near a threshold (a certificate expiring within warn_days, a Nagios
// plugin's WARNING). It is final like ok, is not retried even with
// --retry-failures, and does not count against --max-failures (Status.Failed);
// a batch whose hosts all passed, some with warnings, has not failed
// (Summary.Failed), though `--fail-on warn` makes its exit code 2.
//
// # Fencing
//
// Two tokens make stale writers harmless. A worker's claim key, bound to
// its lease, is created in the claim transaction; every commit for the
// group compares that key's create revision, so a worker whose lease
// expired, whose claim was revoked, or that was paused past its TTL (a
// zombie) has its commit rejected. The scheduler's election key and its
// create revision (Fence) guard every leader write, so a deposed leader
// can write nothing.
//
// # Groups
//
// A worker claims up to MaxClaim tasks as one group: one claim key (leased)
// and one running record (durable) per group rather than per task, which is
// what keeps a task to about three key writes. As outcomes are committed
// the group's done set grows; the commit that finishes the group deletes
// its claim and records. When a claim vanishes with tasks unfinished, the
// group is frozen (no worker can write for it) and RecoverGroup moves each
// unfinished task back to ready in one transaction compared on the group's
// records.
//
// # Limits
//
// etcd allows 128 operations per transaction branch, so transactions move
// at most 60-120 tasks; every range is paged; listings that must agree are
// read at one revision; etcd counts every key of a range even when a limit
// is set, so ready queues are listed one shard (and batch) at a time. A
// deleted key stays in etcd's index (a tombstone) until compaction and is
// walked by every range over it, so a claimer lists through a ReadyCursor:
// each batch's range in a shard starts past the keys it listed last time
// and wraps around, units found empty are skipped until a wake, and what a
// listing finds is shared between batches by their priority
// (PriorityWeight), so no batch waits behind another.
package queue
