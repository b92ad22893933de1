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
// While leading, the scheduler:
//
//   - watches <prefix>/active/ and shards each new batch into tasks and
//     per-shard ready keys (queue.Queue.Shard), resumably;
//   - watches <prefix>/claims/ for deletions and requeues a task whose claim
//     vanished without a result (its worker's lease expired or it released
//     the task), up to MaxAttempts;
//   - sweeps active batches periodically for orphaned tasks, the safety net
//     for deletions no scheduler saw (for example while none was leading);
//   - follows each active batch's results (queue.ResultTally: a list, then
//     a watch) and writes the batch's summary exactly once when every host
//     has a result, as soon as the last one is committed, from a tally
//     confirmed current against etcd (or, failing that, a full read).
//   - fires schedules' ticks (schedules.go): each tick's batch is created
//     in one fenced transaction that also holds only if the batch ID,
//     which names the schedule and the tick, is unused, so a tick runs at
//     most once whichever leader gets there; ticks missed while no one led
//     are caught up by the schedule's catch-up rule and counted; the
//     cadence and its DST rule are in cadence.go, behind a Clock so tests
//     step a fake one across daylight saving changes.
//
// What it does not guarantee: leadership is a lease, and two processes may
// both believe they lead for up to a session TTL; fencing makes that harmless
// for etcd state, but not for side effects outside etcd (the scheduler has
// none). A leader's view of the queue lags etcd by a watch delivery.
package scheduler
