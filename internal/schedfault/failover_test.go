//go:build linux

package schedfault

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

const (
	every = 2 * time.Second
	// stopFor is how long a frozen leader stays frozen: longer than its
	// session TTL, so its lease expires and another scheduler leads
	// before it wakes up believing it still does.
	stopFor = sessionTTL + 1500*time.Millisecond
)

// beforeTick are the points before a tick at which faults strike.
var beforeTick = []time.Duration{50 * time.Millisecond, 300 * time.Millisecond, 800 * time.Millisecond, 1500 * time.Millisecond}

// fault is one fault injected into the leading scheduler.
type fault struct {
	kind   string // "kill -9" or "SIGSTOP"
	target string
	at     time.Time
}

// TestLeaderKilledAndFrozenWhileTicking is issue 14's failover test with
// real processes: three schedulers with a 2 s session TTL, a worker, a
// schedule every 2 s, and the leader in turn killed with SIGKILL (a new
// scheduler started in its place) and frozen with SIGSTOP for longer than
// its TTL (then SIGCONT), for SCHEDFAULT_WINDOW (default 20 s). Every tick
// from the schedule's start to the last one dealt with has exactly one
// batch, or is counted missed (due while no scheduler led, superseded by
// a later tick: the catch-up rule runs only the latest).
func TestLeaderKilledAndFrozenWhileTicking(t *testing.T) {
	window := 20 * time.Second
	if s := os.Getenv("SCHEDFAULT_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SCHEDFAULT_WINDOW=%q: want a duration such as 2m", s)
		}
		window = d
	}
	h := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), window+2*time.Minute)
	defer cancel()

	for range 3 {
		h.startScheduler()
	}
	h.startWorker("w1")
	const name = "fault"
	// allow: a run still active when the next tick falls due (its summary
	// waits for a leader too) does not turn the tick into a skip; every
	// tick not run is then one the failover cost. --history keeps every
	// run for the check.
	h.run("schedule", "create", name, "-i", inventory(t, name, 2), "--check", "noop", "--every", every.String(),
		"--overlap", "allow", "--history", fmt.Sprint(queue.MaxHistory))
	h.awaitRuns(ctx, name, 1)

	var faults []fault
	cad, err := scheduler.ParseCadence("", every)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(window)
	for i := 0; time.Now().Before(end); i++ {
		// Strike at a different point before the next tick each time
		// (each kind of fault meets every point): just before it, the
		// tick falls due while no one leads and waits for the faulted
		// leader's lease to expire; well before it, a successor may lead
		// by then.
		<-time.After(time.Until(cad.Next(time.Now())) - beforeTick[(i/2)%len(beforeTick)]) // the fault's timing
		id, p := h.leader(ctx)
		f := fault{target: id, at: time.Now()}
		if i%2 == 0 {
			f.kind = "kill -9"
			p.Signal(t, syscall.SIGKILL)
			p.Wait(t, 10*time.Second)
			delete(h.scheds, id)
			h.startScheduler()
		} else {
			f.kind = "SIGSTOP"
			h.stopped[id] = true
			p.Signal(t, syscall.SIGSTOP)
			<-time.After(stopFor) // the fault itself: frozen past its TTL
			p.Signal(t, syscall.SIGCONT)
			delete(h.stopped, id)
		}
		faults = append(faults, f)
		// Recovered: a live scheduler leads and has fired a tick since,
		// and one more in steady state before the next fault.
		n := h.runs(ctx, name)
		h.leader(ctx)
		h.awaitRuns(ctx, name, n+2)
	}
	// Every tick due by the window's end dealt with, then no scheduler
	// left to change anything while the state and batches are read.
	last := cad.Next(end.Add(-every)) // the last tick at or before the window's end
	h.awaitState(ctx, name, "the last tick of the window dealt with", func(st queue.ScheduleState) bool { return !st.LastTick.Before(last) })
	for _, p := range h.scheds {
		p.Stop(t)
	}

	fig := h.check(ctx, name, faults)
	out := fig.String()
	t.Log("\n" + out)
	if path := os.Getenv("SCHEDFAULT_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o666); err != nil {
			t.Errorf("write the report: %v", err)
		}
	}
}

// figures is what a failover run measured.
type figures struct {
	window          time.Duration
	kills, stops    int
	expected, fired int
	missed, skipped int
	missedWhy       map[string]int
	duplicates      int
	delays          [3][]time.Duration // ticks due within a TTL after a fault, within two, the others
}

// check reads the schedule's state, its run index and the batch list, and
// fails the test on a tick with two batches, a batch for no tick, a run
// index and batch list that disagree, or a tick neither run nor counted.
func (h *harness) check(ctx context.Context, name string, faults []fault) figures {
	t := h.t
	t.Helper()
	rec, err := h.q.Schedule(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	spec, st := rec.Spec, rec.State
	cad, err := scheduler.ParseCadence(spec.Cron, spec.Every())
	if err != nil {
		t.Fatal(err)
	}
	var ticks []time.Time
	for tk := cad.Next(spec.Since); !tk.After(st.LastTick); tk = cad.Next(tk) {
		ticks = append(ticks, tk)
	}
	fig := figures{expected: len(ticks), fired: int(st.Fired), missed: int(st.Missed), skipped: int(st.Skipped), missedWhy: map[string]int{}}
	if len(faults) > 0 {
		fig.window = time.Since(faults[0].at)
	}
	for _, f := range faults {
		if f.kind == "kill -9" {
			fig.kills++
		} else {
			fig.stops++
		}
	}

	// The batch list, by tick: batch IDs name the tick, so two batches
	// for one tick would have to differ in their scheduled_for.
	batches := h.scheduleBatches(ctx, name)
	byTick := map[time.Time][]queue.BatchSpec{}
	for _, b := range batches {
		byTick[b.ScheduledFor.UTC()] = append(byTick[b.ScheduledFor.UTC()], b)
	}
	for tk, bs := range byTick {
		if len(bs) > 1 {
			fig.duplicates += len(bs) - 1
			t.Errorf("tick %s has %d batches", tk, len(bs))
		}
		for _, b := range bs {
			if b.ID != queue.ScheduleBatchID(name, tk, false) {
				t.Errorf("batch %s for tick %s: not the tick's ID %s", b.ID, tk, queue.ScheduleBatchID(name, tk, false))
			}
		}
		if !slices.ContainsFunc(ticks, tk.Equal) {
			t.Errorf("batch for %s, which is no tick of the schedule between its start and its last tick", tk)
		}
	}
	// The run index lists the same batches.
	runs, err := h.q.ScheduleRuns(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != len(batches) {
		t.Errorf("the run index lists %d runs, the batch list %d batches", len(runs), len(batches))
	}
	for _, r := range runs {
		if bs := byTick[r.Tick.UTC()]; len(bs) != 1 || bs[0].ID != r.Batch {
			t.Errorf("run %s (tick %s) is not the batch list's one batch for its tick", r.Batch, r.Tick)
		}
	}
	if fig.fired != len(batches) {
		t.Errorf("the state counts %d fired, there are %d batches", fig.fired, len(batches))
	}

	// Every tick without a batch is counted: missed (or skipped, which
	// --overlap allow never does), and, where the state's events reach
	// back that far, by a missed event covering it.
	var notRun []time.Time
	for _, tk := range ticks {
		if len(byTick[tk.UTC()]) == 0 {
			notRun = append(notRun, tk)
		}
	}
	if len(notRun) != fig.missed+fig.skipped {
		t.Errorf("%d ticks have no batch, the state counts %d missed + %d skipped: a tick was lost", len(notRun), fig.missed, fig.skipped)
	}
	if got := fig.fired + fig.missed + fig.skipped; got != fig.expected {
		t.Errorf("%d ticks from the start to the last dealt with, %d fired + %d missed + %d skipped = %d", fig.expected, fig.fired, fig.missed, fig.skipped, got)
	}
	var covered []time.Time
	for _, ev := range st.Events {
		if ev.What != queue.TickMissed {
			continue
		}
		n := max(ev.Count, 1)
		fig.missedWhy[ev.Why] += n
		for k := range n {
			covered = append(covered, ev.Tick.Add(time.Duration(k)*every))
		}
	}
	if len(st.Events) > 0 {
		for _, tk := range notRun {
			if !tk.Before(st.Events[0].Tick) && !slices.ContainsFunc(covered, tk.Equal) {
				t.Errorf("tick %s has no batch and no missed event covers it", tk)
			}
		}
	}
	if n := fig.missed - sum(fig.missedWhy); n > 0 {
		fig.missedWhy["(older events trimmed from the state)"] = n
	}

	// Delay from each tick to its batch's creation, by how long after the
	// latest fault before it the tick was due: within a session TTL (the
	// faulted leader's lease still holds the election), within two (the
	// lease has just expired and the successor is being elected), later.
	for _, b := range batches {
		d := b.CreatedAt.Sub(b.ScheduledFor)
		since := time.Duration(-1)
		for _, f := range faults {
			if !b.ScheduledFor.Before(f.at) {
				since = b.ScheduledFor.Sub(f.at)
			}
		}
		switch {
		case since >= 0 && since < sessionTTL:
			fig.delays[0] = append(fig.delays[0], d)
		case since >= 0 && since < 2*sessionTTL:
			fig.delays[1] = append(fig.delays[1], d)
		default:
			fig.delays[2] = append(fig.delays[2], d)
		}
	}
	if fig.kills < 1 || fig.stops < 1 {
		t.Errorf("only %d kills and %d stops in the window", fig.kills, fig.stops)
	}
	return fig
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (f figures) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule --every %s, 3 schedulers (--session-ttl %s), %s of faults on the leader: %d kill -9 (restarted), %d SIGSTOP for %s\n",
		every, sessionTTL, f.window.Round(time.Second), f.kills, f.stops, stopFor)
	fmt.Fprintf(&b, "ticks expected %d, fired %d, missed %d, skipped %d, duplicates %d\n", f.expected, f.fired, f.missed, f.skipped, f.duplicates)
	whys := make([]string, 0, len(f.missedWhy))
	for why := range f.missedWhy {
		whys = append(whys, why)
	}
	slices.Sort(whys)
	for _, why := range whys {
		fmt.Fprintf(&b, "  missed %d: %s\n", f.missedWhy[why], why)
	}
	for _, ds := range []struct {
		what string
		d    []time.Duration
	}{{"ticks due within a TTL after a fault", f.delays[0]}, {"ticks due 1-2 TTLs after a fault", f.delays[1]}, {"the other ticks", f.delays[2]}} {
		if len(ds.d) == 0 {
			fmt.Fprintf(&b, "tick to batch delay, %s: none\n", ds.what)
			continue
		}
		slices.Sort(ds.d)
		fmt.Fprintf(&b, "tick to batch delay, %s (%d): p50 %s, p99 %s, max %s\n", ds.what, len(ds.d),
			ds.d[len(ds.d)/2].Round(time.Millisecond), ds.d[len(ds.d)*99/100].Round(time.Millisecond), ds.d[len(ds.d)-1].Round(time.Millisecond))
	}
	return b.String()
}
