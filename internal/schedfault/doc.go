// Package schedfault is the fault test of recurring schedules (issue 14)
// with real processes and real signals: an embedded etcd, three `patrol
// scheduler` processes with a 2 s session TTL and a `patrol worker`, a
// schedule created with `patrol schedule create --every 2s`, and the
// leading scheduler killed with SIGKILL (and restarted) or frozen with
// SIGSTOP for longer than its TTL (then SIGCONT), in turn, for a window:
// 20 s by default, SCHEDFAULT_WINDOW=2m for the two minutes.
//
// Afterwards it reads etcd: every tick from the schedule's start to the
// last one dealt with has exactly one batch (the run index and the batch
// list agree), or is counted missed by the schedule's state, as the
// catch-up rule says (of the ticks due while no scheduler led, only the
// latest runs). It prints ticks expected, fired, missed (and why),
// duplicates and the delay from a tick to its batch's creation, for ticks
// due within a session TTL after a fault and for the others; the figures
// also go to the file $SCHEDFAULT_REPORT names (CI prints it).
//
// Beside it, end to end: `patrol schedule delete` while a run is in
// flight (the run finishes, no tick fires after), and `patrol schedule
// update` racing the ticks (no tick twice, none lost, every batch created
// after an update has the updated inventory).
//
// The tests are Linux-only (real signals) and skipped with -short.
package schedfault
