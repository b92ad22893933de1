// Package scheduler runs Patrol's elected scheduler.
//
// Any number of schedulers may run; one leads. Each holds an etcd session
// (a lease kept alive by the client) and campaigns through
// concurrency.Election under <prefix>/election. The winner's election key
// and its create revision form the fencing token (queue.Fence): every write
// the leader makes is a transaction that compares the election key's create
// revision, so a leader that lost its session, or was paused while another
// took over, has its writes rejected and steps down. Leading work runs in a
// context cancelled the moment the session ends or a fenced write is
// rejected.
//
// # Duties
//
// A term's work is split into duties, each a goroutine with its own
// cadence and state, in a file of its own, started with the term and
// stopped with it. They share one thing, the registry of active batches
// (batches.go), which follows <prefix>/active/ and <prefix>/cancels/,
// loads each new batch's spec and follows its results (queue.ResultTally:
// a list, then a watch), and wakes every duty on each change:
//
//	                    ┌──────────────────────────────┐
//	 active/, cancels/ ─▶ registry: spec, result tally ├─ wakes ─┐
//	                    └──────────────────────────────┘         │
//	  ┌─────────────┬──────────────┬─────────────┬───────────────┤
//	  ▼             ▼              ▼             ▼               ▼
//	shard        retry          finish        release          assign
//	(shard.go)   (retry.go)     (finish.go)   (release.go)     (assign.go) ◀─ workers/
//	4 batches    once per       stop, early   --parallel       shards per
//	at once,     batch/term     stop, summary, cap, 100 ms     zone, on change
//	smallest                    counts, 0.5 s
//	first
//
//	promote (promote.go) ◀─ delayed/: due tasks ready again, every 100 ms
//	recovery (recovery.go) ◀─ claims/: lost claims requeued at once; sweep
//	                          every SweepInterval: unseen losses, overdue claims
//	retention (retention.go): every minute: purge, abandoned uploads,
//	                          lost tasks of batches stalled a minute
//
// One slow duty never delays another: sharding a million hosts runs on the
// shard duty's goroutine while a ten-host batch is sharded beside it,
// finished by the finish duty and its results counted from its tally. No
// duty re-reads a batch's keys per pass: counts come from the tallies and
// from what each duty itself wrote (the release duty counts held tasks once
// per term and subtracts what it released). What still reads a whole batch
// runs once: a tally's first list (per term), a stop (once per batch), the
// lost-task check (once a stalled batch has not moved for a minute, then
// every five).
//
// What it does not guarantee: leadership is a lease, and two processes may
// both believe they lead for up to a session TTL; fencing makes that harmless
// for etcd state, but not for side effects outside etcd (the scheduler has
// none). A leader's view of the queue lags etcd by a watch delivery.
package scheduler
