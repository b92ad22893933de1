package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// Clock is the time the schedule duty reads and waits on. Tests give it a
// fake one to step across daylight saving changes and outages.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Schedule duty defaults.
const (
	schedulePoll  = time.Second      // schedules (and triggers) are re-read at least this often
	schedulePrune = 30 * time.Second // each schedule's history is trimmed this often
	maxDueTicks   = 10000            // ticks walked one by one in a pass; more are counted in bulk
)

// scheduleDuty fires schedules' ticks for one leadership term. It reads
// every schedule each pass (at most schedulePoll apart, and when the next
// tick is due), and deals with each due tick in one fenced transaction:
// FireSchedule creates the tick's batch and advances the schedule's state
// together; SetScheduleState records a tick skipped, buffered or missed.
// Either holds only while this term leads and the schedule is as read, so
// a tick is dealt with once, whichever leader gets there.
//
// Rules, per schedule and pass:
//
//   - a pending trigger runs first, whatever the pause and overlap policy;
//   - a paused schedule does nothing else;
//   - a tick held by buffer-one runs once the run before it finished;
//   - of the ticks due (tick + its jitter has passed) only the latest
//     runs: the earlier ones are recorded as missed (they were due while
//     no leader fired them), and the latest too when it is older than the
//     catch-up window;
//   - while the previous run is still active, the overlap policy decides:
//     skip (record it), buffer-one (hold it, replacing a held one),
//     cancel-running (run it, then cancel the previous run), allow.
type scheduleDuty struct {
	q     *queue.Queue
	fence queue.Fence
	log   zerolog.Logger
	clock Clock
	m     *metrics.Schedules

	lastPrune time.Time
}

func newScheduleDuty(q *queue.Queue, fence queue.Fence, log zerolog.Logger, m *metrics.Schedules, clock Clock) *scheduleDuty {
	if clock == nil {
		clock = realClock{}
	}
	return &scheduleDuty{q: q, fence: fence, log: log, m: m, clock: clock}
}

// run fires ticks until ctx ends (nil) or the fence breaks (ErrNotLeader).
func (d *scheduleDuty) run(ctx context.Context) error {
	for ctx.Err() == nil {
		next, err := d.runOnce(ctx, d.clock.Now())
		if errors.Is(err, queue.ErrNotLeader) {
			return err
		}
		wait := schedulePoll
		if !next.IsZero() {
			wait = min(wait, next.Sub(d.clock.Now()))
		}
		select {
		case <-ctx.Done():
		case <-d.clock.After(max(wait, 5*time.Millisecond)):
		}
	}
	return nil
}

// runOnce deals with every schedule as of now and returns when the next
// tick is due (zero: none known).
func (d *scheduleDuty) runOnce(ctx context.Context, now time.Time) (time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	recs, bad, err := d.q.Schedules(cctx)
	cancel()
	if err != nil {
		d.log.Warn().Err(err).Msg("cannot read schedules")
		return now.Add(schedulePoll), nil
	}
	for _, b := range bad {
		if err := d.quarantine(ctx, b.Key(), b.Err, func(ctx context.Context) error { return d.q.QuarantineSchedule(ctx, d.fence, b) }); err != nil {
			return time.Time{}, err
		}
	}
	var next time.Time
	for _, rec := range recs {
		n, err := d.handle(ctx, rec, now)
		if errors.Is(err, queue.ErrNotLeader) {
			return time.Time{}, err
		}
		if errors.Is(err, queue.ErrBadValue) {
			// Its inventory is missing or does not decode: it cannot fire.
			why := err
			err = d.quarantine(ctx, d.q.Keys().Schedule(rec.Spec.Name), why, func(ctx context.Context) error {
				return d.q.QuarantineScheduleSpec(ctx, d.fence, rec, why)
			})
			if err != nil {
				return time.Time{}, err
			}
			continue
		}
		if err != nil && !errors.Is(err, queue.ErrConflict) {
			d.log.Warn().Err(err).Str("schedule", rec.Spec.Name).Msg("schedule tick not dealt with; trying again")
			n = now.Add(schedulePoll)
		}
		if !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	if now.Sub(d.lastPrune) >= schedulePrune {
		d.lastPrune = now
		if err := d.prune(ctx, recs); err != nil {
			return time.Time{}, err
		}
	}
	return next, nil
}

func (d *scheduleDuty) quarantine(ctx context.Context, key string, why error, move func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := move(cctx)
	if errors.Is(err, queue.ErrNotLeader) {
		return err
	}
	if errors.Is(err, queue.ErrConflict) {
		return nil // changed since it was read: judged again on the next pass
	}
	if err != nil {
		d.log.Warn().Err(err).Str("key", key).Msg("cannot quarantine a malformed schedule record")
		return nil
	}
	d.m.Malformed.Inc()
	d.log.Error().Err(why).Str("key", key).Str("quarantine", d.q.Keys().Quarantine(key)).
		Msg("malformed schedule record quarantined; the other schedules keep firing")
	return nil
}

// handle deals with one schedule's due ticks and returns when its next one
// is due (now: look again at once; zero: nothing due, such as paused).
func (d *scheduleDuty) handle(ctx context.Context, rec queue.ScheduleRecord, now time.Time) (time.Time, error) {
	spec := rec.Spec
	log := d.log.With().Str("schedule", spec.Name).Logger()
	cad, err := ParseCadence(spec.Cron, spec.Every())
	if err != nil {
		return time.Time{}, d.quarantine(ctx, d.q.Keys().Schedule(spec.Name), err, func(ctx context.Context) error {
			return d.q.QuarantineScheduleSpec(ctx, d.fence, rec, err)
		})
	}
	st := rec.State
	st.Events = slices.Clone(st.Events)

	if rec.TriggerRev != 0 {
		id := queue.ScheduleBatchID(spec.Name, rec.Trigger, true)
		st.LastBatch = id
		st.Triggered++
		return now, d.fire(ctx, log, rec, queue.Fire{Tick: rec.Trigger, Trigger: true, State: st}, rec.Trigger, "triggered")
	}
	if spec.Paused {
		return time.Time{}, nil
	}

	running := false
	if st.LastBatch != "" {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		running, err = d.q.Active(cctx, st.LastBatch)
		cancel()
		if err != nil {
			return time.Time{}, err
		}
	}
	if !st.Buffered.IsZero() && !running {
		tick := st.Buffered
		st.Buffered = time.Time{}
		return now, d.fireTick(ctx, log, rec, st, tick, now, "buffered tick: the run before it finished")
	}

	// The ticks due: after the last one dealt with, and not before the
	// schedule's start (creation, resume, change of cadence).
	after := st.LastTick
	if spec.Since.After(after) {
		after = spec.Since
	}
	due := func(t time.Time) time.Time { return t.Add(JitterOf(spec.Name, t, spec.Jitter())) }
	var first, last time.Time
	n := 0
	if cad.Every() > 0 {
		// Fixed intervals jump over a long outage in one step.
		if horizon := now.Add(-spec.CatchupWindow() - spec.Jitter() - cad.Every()); after.Before(horizon) {
			skip := int(horizon.Sub(after) / cad.Every())
			if skip > 0 {
				first = cad.Next(after)
				after = after.Add(time.Duration(skip) * cad.Every())
				n = skip
			}
		}
	}
	t := cad.Next(after)
	for !t.IsZero() && !due(t).After(now) {
		if first.IsZero() {
			first = t
		}
		last = t
		n++
		if n >= maxDueTicks {
			// A cron schedule unattended for very long: count the rest as
			// one missed run of ticks, from the catch-up horizon.
			after = now.Add(-spec.CatchupWindow() - spec.Jitter())
			if last.Before(after) {
				t = cad.Next(after)
				continue
			}
		}
		t = cad.Next(t)
	}
	if n == 0 {
		if t.IsZero() {
			return time.Time{}, nil
		}
		return due(t), nil
	}
	if last.IsZero() { // every tick was jumped over
		last = after
	}

	missed := n - 1
	run := last
	if now.Sub(due(last)) > spec.CatchupWindow() {
		missed++
		run = time.Time{}
	}
	st.LastTick = last
	if missed > 0 {
		why := "due while no leader fired it; superseded by a later tick (only the latest missed tick runs)"
		if run.IsZero() {
			why = fmt.Sprintf("older than the catch-up window (%s)", spec.CatchupWindow())
		}
		st.Missed += int64(missed)
		st.Record(queue.TickEvent{Tick: first, At: now, What: queue.TickMissed, Why: why, Count: missed})
	}
	if run.IsZero() {
		return now, d.record(ctx, log, rec, st, map[string]int{"missed": missed})
	}

	if running {
		switch spec.Overlap {
		case queue.OverlapSkip:
			st.Skipped++
			st.Record(queue.TickEvent{Tick: run, At: now, What: queue.TickSkipped, Why: "run " + st.LastBatch + " still running (overlap skip)"})
			return now, d.record(ctx, log, rec, st, map[string]int{"missed": missed, "skipped": 1})
		case queue.OverlapBufferOne:
			skipped := 0
			if !st.Buffered.IsZero() {
				skipped = 1
				st.Skipped++
				st.Record(queue.TickEvent{Tick: st.Buffered, At: now, What: queue.TickSkipped, Why: "replaced by a later buffered tick (overlap buffer-one)"})
			}
			st.Buffered = run
			st.Record(queue.TickEvent{Tick: run, At: now, What: queue.TickBuffered, Why: "waits for run " + st.LastBatch + " (overlap buffer-one)"})
			return now, d.record(ctx, log, rec, st, map[string]int{"missed": missed, "skipped": skipped, "buffered": 1})
		case queue.OverlapCancel:
			prev := st.LastBatch
			st.Record(queue.TickEvent{Tick: run, At: now, What: queue.TickCancelled, Batch: prev, Why: "cancelled for a new tick (overlap cancel-running)"})
			if err := d.fireTick(ctx, log, rec, st, run, now, ""); err != nil {
				return now, err
			}
			d.countMissed(missed)
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			if _, err := d.q.Cancel(cctx, prev); err != nil {
				log.Warn().Err(err).Str("batch_id", prev).Msg("cannot cancel the previous run (overlap cancel-running)")
			} else {
				log.Info().Str("batch_id", prev).Msg("cancelled the previous run for a new tick (overlap cancel-running)")
			}
			return now, nil
		}
	}
	if err := d.fireTick(ctx, log, rec, st, run, now, ""); err != nil {
		return now, err
	}
	d.countMissed(missed)
	return now, nil
}

func (d *scheduleDuty) countMissed(n int) { d.m.Ticks("missed", n) }

// fireTick creates the run of a cadence tick.
func (d *scheduleDuty) fireTick(ctx context.Context, log zerolog.Logger, rec queue.ScheduleRecord, st queue.ScheduleState, tick, now time.Time, why string) error {
	id := queue.ScheduleBatchID(rec.Spec.Name, tick, false)
	st.LastBatch = id
	st.Fired++
	if why != "" {
		st.Record(queue.TickEvent{Tick: tick, At: now, What: queue.TickFired, Batch: id, Why: why})
	}
	return d.fire(ctx, log, rec, queue.Fire{Tick: tick, State: st}, tick.Add(JitterOf(rec.Spec.Name, tick, rec.Spec.Jitter())), "fired")
}

// fire creates a run's batch; dueAt is when it was due, for the delay.
func (d *scheduleDuty) fire(ctx context.Context, log zerolog.Logger, rec queue.ScheduleRecord, f queue.Fire, dueAt time.Time, outcome string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	f.Now = d.clock.Now()
	id, created, err := d.q.FireSchedule(cctx, d.fence, rec, f)
	if err != nil {
		return err
	}
	if !created {
		log.Info().Str("batch_id", id).Msg("schedule tick's batch already existed: recorded, not created again")
		return nil
	}
	d.m.Ticks(outcome, 1) // counted by the leader that created it: summed over schedulers, once
	delay := d.clock.Now().Sub(dueAt)
	d.m.FireDelay.Observe(max(delay, 0).Seconds())
	log.Info().Str("batch_id", id).Time("tick", f.Tick).Dur("delay", delay).Bool("trigger", f.Trigger).Msg("schedule fired")
	return nil
}

// record stores the state of ticks not run, and counts them once stored.
func (d *scheduleDuty) record(ctx context.Context, log zerolog.Logger, rec queue.ScheduleRecord, st queue.ScheduleState, counts map[string]int) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := d.q.SetScheduleState(cctx, d.fence, rec, st); err != nil {
		return err
	}
	for outcome, n := range counts {
		d.m.Ticks(outcome, n)
	}
	last := st.Events[len(st.Events)-1]
	log.Info().Str("what", last.What).Time("tick", last.Tick).Int("ticks", max(last.Count, 1)).Str("why", last.Why).Msg("schedule tick not run")
	return nil
}

// prune keeps each schedule's newest History runs and purges older
// finished ones (a run still active is left until it finishes), and
// deletes inventory versions that a create or update left half-written.
func (d *scheduleDuty) prune(ctx context.Context, recs []queue.ScheduleRecord) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := d.q.CleanScheduleUploads(cctx, d.fence, d.clock.Now().Add(-queue.AbandonedUploads))
	if errors.Is(err, queue.ErrNotLeader) {
		return err
	}
	if err != nil {
		d.log.Warn().Err(err).Msg("cannot clean schedule inventory uploads that died half-way")
	} else if n > 0 {
		d.log.Info().Int("uploads", n).Msg("deleted schedule inventory versions no schedule points at")
	}
	for _, rec := range recs {
		runs, err := d.q.ScheduleRuns(cctx, rec.Spec.Name)
		if err != nil {
			d.log.Warn().Err(err).Str("schedule", rec.Spec.Name).Msg("cannot list a schedule's runs for its history")
			continue
		}
		for _, r := range runs[:max(0, len(runs)-rec.Spec.History)] {
			err := d.q.PurgeScheduleRun(cctx, d.fence, rec.Spec.Name, r.Batch)
			if errors.Is(err, queue.ErrNotLeader) {
				return err
			}
			if err != nil {
				d.log.Warn().Err(err).Str("batch_id", r.Batch).Msg("cannot purge an old schedule run")
				break
			}
			d.log.Debug().Str("schedule", rec.Spec.Name).Str("batch_id", r.Batch).Int("history", rec.Spec.History).Msg("purged an old schedule run")
		}
	}
	return nil
}
