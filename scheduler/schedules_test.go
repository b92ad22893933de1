package scheduler_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

// TestScheduleExactlyOnceAcrossFailovers runs three schedulers on real etcd
// and a schedule every 2 s, and keeps deposing the leader, cleanly and by
// crashing it (its lease left to expire): every tick from
// the schedule's start to the last one dealt with has exactly one batch, or
// is counted missed (a tick due while no one led, superseded by a later
// one); no tick has two batches and none is lost unaccounted.
// PATROL_SCHEDULE_SOAK=2m runs it for longer.
func TestScheduleExactlyOnceAcrossFailovers(t *testing.T) {
	f := setup(t)
	soak := 16 * time.Second
	if s := os.Getenv("PATROL_SCHEDULE_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		soak = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), soak+time.Minute)
	defer cancel()
	spec, err := f.q.CreateSchedule(ctx, queue.ScheduleSpec{Name: "ex", EveryMS: 2000, Check: "noop",
		Overlap: queue.OverlapAllow, History: queue.MaxHistory}, hosts(2))
	if err != nil {
		t.Fatal(err)
	}

	// Each scheduler has a client of its own: closing it is a crash as
	// etcd sees one (the session's lease is not revoked and expires after
	// its TTL), as a kill -9 is.
	type candidate struct {
		r   *running
		cli *clientv3.Client
	}
	live := map[string]candidate{}
	n := 0
	startOne := func() {
		n++
		id := fmt.Sprintf("s%d", n)
		cli := etcdtest.NewClient(t)
		r := &running{fences: make(chan queue.Fence, 16)}
		log := zerolog.Nop()
		if os.Getenv("PATROL_SCHEDULE_SOAK_LOG") != "" {
			log = zerolog.New(os.Stderr).With().Timestamp().Logger()
		}
		s, err := scheduler.New(queue.New(cli, f.env.Prefix), scheduler.Config{ID: id, SessionTTL: 2 * time.Second, Log: log,
			OnLeading: func(fc queue.Fence) { r.fences <- fc }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { s.Run(ctx) })
		var once sync.Once
		r.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
		t.Cleanup(r.stop)
		live[id] = candidate{r: r, cli: cli}
	}
	for range 3 {
		startOne()
	}
	cad, _ := scheduler.ParseCadence("", 2*time.Second)
	deadline := time.Now().Add(soak)
	failovers, crashes := 0, 0
	var crashedAt []time.Time
	for time.Now().Before(deadline) {
		// Let the leader fire a tick or two, then depose it: a clean stop
		// (it revokes its lease) and a crash in turn.
		want := failovers + 1
		waitFor(t, 30*time.Second, fmt.Sprintf("%d runs", want), func() bool {
			runs, err := f.q.ScheduleRuns(ctx, "ex")
			return err == nil && len(runs) >= want
		})
		l, ok, err := f.q.CurrentLeader(ctx)
		if err != nil || !ok {
			continue
		}
		c, ok := live[l.ID]
		if !ok {
			continue
		}
		if failovers%2 == 1 {
			// Crash just before a tick: the tick falls due while no one
			// leads, and waits for the lease to expire.
			if d := time.Until(cad.Next(time.Now())) - 150*time.Millisecond; d > 0 {
				<-time.After(d)
			}
			c.cli.Close()
			crashes++
			crashedAt = append(crashedAt, time.Now())
		}
		c.r.stop()
		delete(live, l.ID)
		failovers++
		startOne()
	}
	for _, c := range live {
		c.r.stop()
	}

	rec, err := f.q.Schedule(ctx, "ex")
	if err != nil {
		t.Fatal(err)
	}
	st := rec.State
	runs, err := f.q.ScheduleRuns(ctx, "ex")
	if err != nil {
		t.Fatal(err)
	}
	var ticks []time.Time
	for tk := cad.Next(spec.Since); !tk.After(st.LastTick); tk = cad.Next(tk) {
		ticks = append(ticks, tk)
	}
	byTick := map[time.Time][]string{}
	var delays, afterCrash []time.Duration
	for _, r := range runs {
		b, err := f.q.LoadBatch(ctx, r.Batch)
		if err != nil {
			t.Fatalf("run %s: %v", r.Batch, err)
		}
		if b.Schedule != "ex" || !b.ScheduledFor.Equal(r.Tick) || r.Batch != queue.ScheduleBatchID("ex", r.Tick, false) {
			t.Fatalf("run %s: batch says schedule %q tick %s", r.Batch, b.Schedule, b.ScheduledFor)
		}
		byTick[r.Tick] = append(byTick[r.Tick], r.Batch)
		d := b.CreatedAt.Sub(b.ScheduledFor)
		// A tick that fell due within two lease TTLs after a crash waited
		// for the successor.
		if slices.ContainsFunc(crashedAt, func(c time.Time) bool { return !r.Tick.Before(c) && r.Tick.Sub(c) < 4*time.Second }) {
			afterCrash = append(afterCrash, d)
		} else {
			delays = append(delays, d)
		}
	}
	for tk, ids := range byTick {
		if len(ids) > 1 {
			t.Errorf("tick %s has %d batches: %v", tk, len(ids), ids)
		}
		if !slices.ContainsFunc(ticks, tk.Equal) {
			t.Errorf("batch for %s, which is no tick of the schedule", tk)
		}
	}
	if int(st.Fired) != len(runs) {
		t.Errorf("state counts %d fired, the run index has %d", st.Fired, len(runs))
	}
	if got := int(st.Fired + st.Missed + st.Skipped); got != len(ticks) {
		t.Errorf("%d ticks from the start to the last dealt with, but %d fired + %d missed + %d skipped = %d: a tick was lost",
			len(ticks), st.Fired, st.Missed, st.Skipped, got)
	}
	if failovers < 2 || crashes < 1 {
		t.Errorf("only %d failovers (%d crashes) in %s", failovers, crashes, soak)
	}
	t.Logf("%d failovers (%d crashes); %d ticks: %d fired, %d missed, %d duplicates", failovers, crashes, len(ticks), st.Fired, st.Missed, 0)
	for _, ds := range []struct {
		what string
		d    []time.Duration
	}{{"ticks away from a crash", delays}, {"ticks due within 4 s after a crash", afterCrash}} {
		if len(ds.d) == 0 {
			continue
		}
		slices.Sort(ds.d)
		t.Logf("tick to batch delay, %s (%d): p50 %s, p99 %s, max %s", ds.what, len(ds.d),
			ds.d[len(ds.d)/2].Round(time.Millisecond), ds.d[len(ds.d)*99/100].Round(time.Millisecond), ds.d[len(ds.d)-1].Round(time.Millisecond))
	}
}

// waitFor polls cond (a read of etcd) until it holds or the timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPauseAndResumeAcrossAFailover: a pause written under one leader holds
// under the next, and a resume runs the next tick, not the paused ones.
func TestPauseAndResumeAcrossAFailover(t *testing.T) {
	f := setup(t)
	if _, err := f.q.CreateSchedule(f.ctx, queue.ScheduleSpec{Name: "p", EveryMS: 1000, Check: "noop", Overlap: queue.OverlapAllow}, hosts(1)); err != nil {
		t.Fatal(err)
	}
	a := f.start(t, "a")
	a.leading(t)
	waitFor(t, 20*time.Second, "a first run", func() bool {
		runs, err := f.q.ScheduleRuns(f.ctx, "p")
		return err == nil && len(runs) >= 1
	})
	pausedAt := time.Now()
	if _, err := f.q.UpdateSchedule(f.ctx, "p", nil, pausedAt, func(s *queue.ScheduleSpec) error { s.Paused = true; return nil }); err != nil {
		t.Fatal(err)
	}
	b := f.start(t, "b")
	a.stop()
	b.leading(t)
	// A trigger runs even paused: once b has fired it, b has been over
	// the paused schedule.
	trigger := time.Now()
	if err := f.q.TriggerSchedule(f.ctx, "p", trigger); err != nil {
		t.Fatal(err)
	}
	id := queue.ScheduleBatchID("p", trigger, true)
	waitFor(t, 20*time.Second, "the trigger's run", func() bool { _, err := f.q.LoadBatch(f.ctx, id); return err == nil })
	runs, err := f.q.ScheduleRuns(f.ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Batch != id && r.Tick.After(pausedAt.Add(time.Second)) {
			t.Fatalf("tick %s ran while paused (paused at %s)", r.Tick, pausedAt)
		}
	}
	resumed := time.Now()
	if _, err := f.q.UpdateSchedule(f.ctx, "p", nil, resumed, func(s *queue.ScheduleSpec) error {
		s.Paused, s.Since = false, resumed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a run after the resume", func() bool {
		runs, err := f.q.ScheduleRuns(f.ctx, "p")
		return err == nil && runs[len(runs)-1].Tick.After(resumed)
	})
	rec, err := f.q.Schedule(f.ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State.Missed != 0 {
		t.Fatalf("%d paused ticks counted missed", rec.State.Missed)
	}
}
