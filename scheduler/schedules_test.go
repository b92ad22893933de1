package scheduler_test

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

// TestScheduleExactlyOnceAcrossFailovers runs three schedulers on real etcd
// and a schedule every 2 s, and keeps deposing the leader: every tick from
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
	spec, err := f.q.CreateSchedule(f.ctx, queue.ScheduleSpec{Name: "ex", EveryMS: 2000, Check: "noop",
		Overlap: queue.OverlapAllow, History: queue.MaxHistory}, hosts(2))
	if err != nil {
		t.Fatal(err)
	}

	live := map[string]*running{}
	n := 0
	startOne := func() {
		n++
		id := fmt.Sprintf("s%d", n)
		live[id] = f.start(t, id)
	}
	for range 3 {
		startOne()
	}
	deadline := time.Now().Add(soak)
	failovers := 0
	for time.Now().Before(deadline) {
		// Let the leader fire a tick or two, then depose it.
		want := failovers + 1
		waitFor(t, 20*time.Second, fmt.Sprintf("%d runs", want), func() bool {
			runs, err := f.q.ScheduleRuns(f.ctx, "ex")
			return err == nil && len(runs) >= want
		})
		l, ok, err := f.q.CurrentLeader(f.ctx)
		if err != nil || !ok {
			continue
		}
		if r := live[l.ID]; r != nil {
			r.stop()
			delete(live, l.ID)
			failovers++
			startOne()
		}
	}
	for _, r := range live {
		r.stop()
	}

	rec, err := f.q.Schedule(f.ctx, "ex")
	if err != nil {
		t.Fatal(err)
	}
	st := rec.State
	runs, err := f.q.ScheduleRuns(f.ctx, "ex")
	if err != nil {
		t.Fatal(err)
	}
	cad, _ := scheduler.ParseCadence("", 2*time.Second)
	var ticks []time.Time
	for tk := cad.Next(spec.Since); !tk.After(st.LastTick); tk = cad.Next(tk) {
		ticks = append(ticks, tk)
	}
	byTick := map[time.Time][]string{}
	var delays []time.Duration
	for _, r := range runs {
		b, err := f.q.LoadBatch(f.ctx, r.Batch)
		if err != nil {
			t.Fatalf("run %s: %v", r.Batch, err)
		}
		if b.Schedule != "ex" || !b.ScheduledFor.Equal(r.Tick) || r.Batch != queue.ScheduleBatchID("ex", r.Tick, false) {
			t.Fatalf("run %s: batch says schedule %q tick %s", r.Batch, b.Schedule, b.ScheduledFor)
		}
		byTick[r.Tick] = append(byTick[r.Tick], r.Batch)
		delays = append(delays, b.CreatedAt.Sub(b.ScheduledFor))
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
	if failovers < 2 {
		t.Errorf("only %d failovers in %s", failovers, soak)
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("%d failovers; %d ticks: %d fired, %d missed, %d duplicates; tick to batch delay p50 %s, p99 %s, max %s",
		failovers, len(ticks), st.Fired, st.Missed, 0, delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1])
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
