package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// fakeClock is a clock the test moves; the duty's passes are run by the
// test (runOnce), so After never fires.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(time.Duration) <-chan time.Time { return nil }

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

type dutyFixture struct {
	t     *testing.T
	q     *queue.Queue
	ctx   context.Context
	clock *fakeClock
	duty  *scheduleDuty
	m     *metrics.Schedules
	fence queue.Fence
}

// dutySetup gives a schedule duty on a real etcd, fenced by a key made as
// an election makes one, with a fake clock.
func dutySetup(t *testing.T) *dutyFixture {
	t.Helper()
	env := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	q := queue.New(env.Client, env.Prefix)
	key := q.Keys().Election() + "/test-leader"
	resp, err := env.Client.Put(ctx, key, "test")
	if err != nil {
		t.Fatal(err)
	}
	fence := queue.Fence{Key: key, Rev: resp.Header.Revision}
	clock := &fakeClock{}
	m := metrics.NewScheduler(nil).Schedules
	return &dutyFixture{t: t, q: q, ctx: ctx, clock: clock, m: m, fence: fence,
		duty: newScheduleDuty(q, fence, zerolog.Nop(), m, clock)}
}

func testHosts(n int) []inventory.Host {
	out := make([]inventory.Host, n)
	for i := range out {
		out[i] = inventory.Host{Name: fmt.Sprintf("h%02d", i), Address: "127.0.0.1"}
	}
	return out
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func (f *dutyFixture) create(spec queue.ScheduleSpec, at string) {
	f.t.Helper()
	spec.Check = "noop"
	spec.CreatedAt = mustTime(at)
	if _, err := f.q.CreateSchedule(f.ctx, spec, testHosts(3)); err != nil {
		f.t.Fatal(err)
	}
}

// at moves the clock to t and runs one pass.
func (f *dutyFixture) at(t time.Time) {
	f.t.Helper()
	f.clock.set(t)
	if _, err := f.duty.runOnce(f.ctx, t); err != nil {
		f.t.Fatalf("pass at %s: %v", t, err)
	}
}

// runs lists a schedule's runs' batch IDs, oldest first.
func (f *dutyFixture) runs(name string) []string {
	f.t.Helper()
	runs, err := f.q.ScheduleRuns(f.ctx, name)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, r := range runs {
		out = append(out, r.Batch)
	}
	return out
}

func (f *dutyFixture) state(name string) queue.ScheduleState {
	f.t.Helper()
	rec, err := f.q.Schedule(f.ctx, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return rec.State
}

// finish ends a run as the leader would once every host has a result.
func (f *dutyFixture) finish(batch string) {
	f.t.Helper()
	if err := f.q.Finish(f.ctx, f.fence, batch, queue.Summary{Total: 3, FinishedAt: f.clock.Now()}); err != nil {
		f.t.Fatal(err)
	}
}

func TestScheduleFiresAcrossDSTWithAFakeClock(t *testing.T) {
	for _, tc := range []struct {
		name, cron, created, from, to string
		want                          []string
	}{
		{"berlin-spring", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-03-27T12:00:00Z", "2026-03-28T00:00:00Z", "2026-03-30T12:00:00Z",
			// 02:30 CET, then 02:30 does not exist (03:00 CEST, 01:00Z), then 02:30 CEST
			[]string{"20260328T013000Z", "20260329T010000Z", "20260330T003000Z"}},
		{"berlin-fall", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-10-23T12:00:00Z", "2026-10-24T00:00:00Z", "2026-10-26T12:00:00Z",
			// 02:30 CEST; on the 25th 02:30 happens twice (00:30Z and 01:30Z): once
			[]string{"20261024T003000Z", "20261025T003000Z", "20261026T013000Z"}},
		{"ny-spring", "CRON_TZ=America/New_York 15 2 * * *", "2026-03-06T12:00:00Z", "2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z",
			[]string{"20260307T071500Z", "20260308T070000Z", "20260309T061500Z"}},
		{"ny-fall", "CRON_TZ=America/New_York 30 1 * * *", "2026-10-30T12:00:00Z", "2026-10-31T00:00:00Z", "2026-11-02T12:00:00Z",
			[]string{"20261031T053000Z", "20261101T053000Z", "20261102T063000Z"}},
		{"leap-day", "0 12 28-29 2 *", "2028-02-27T00:00:00Z", "2028-02-27T00:00:00Z", "2028-03-01T12:00:00Z",
			[]string{"20280228T120000Z", "20280229T120000Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := dutySetup(t)
			// allow: no worker finishes the runs here.
			f.create(queue.ScheduleSpec{Name: tc.name, Cron: tc.cron, Overlap: queue.OverlapAllow}, tc.created)
			// A pass every 10 minutes of fake time, as a live leader would
			// (at least) make them.
			for now := mustTime(tc.from); !now.After(mustTime(tc.to)); now = now.Add(10 * time.Minute) {
				f.at(now)
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, tc.name+"-"+w)
			}
			if got := f.runs(tc.name); !slices.Equal(got, want) {
				t.Fatalf("runs:\n got %v\nwant %v", got, want)
			}
			if st := f.state(tc.name); st.Missed != 0 || st.Fired != int64(len(want)) {
				t.Fatalf("state: fired %d missed %d; want %d fired, none missed", st.Fired, st.Missed, len(want))
			}
		})
	}
}

func TestScheduleCatchUp(t *testing.T) {
	f := dutySetup(t)
	f.create(queue.ScheduleSpec{Name: "c", EveryMS: 60_000, CatchupMS: 20_000, Overlap: queue.OverlapAllow}, "2026-12-06T06:00:00Z")
	f.at(mustTime("2026-12-06T06:00:30Z"))
	if got := f.runs("c"); len(got) != 0 {
		t.Fatalf("runs before the first tick: %v", got)
	}
	f.at(mustTime("2026-12-06T06:01:00Z"))
	// No leader for 9 minutes; back 10 s after the 06:10 tick: it runs,
	// the 8 before it are missed.
	f.at(mustTime("2026-12-06T06:10:10Z"))
	if got, want := f.runs("c"), []string{"c-20261206T060100Z", "c-20261206T061000Z"}; !slices.Equal(got, want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	st := f.state("c")
	if st.Fired != 2 || st.Missed != 8 {
		t.Fatalf("fired %d missed %d, want 2 and 8", st.Fired, st.Missed)
	}
	last := st.Events[len(st.Events)-1]
	if last.What != queue.TickMissed || last.Count != 8 || !last.Tick.Equal(mustTime("2026-12-06T06:02:00Z")) || !strings.Contains(last.Why, "superseded") {
		t.Fatalf("missed event %+v", last)
	}
	// Back 30 s after the 08:00 tick: older than the 20 s window, so all
	// 110 ticks since 06:10 are missed, none run.
	f.at(mustTime("2026-12-06T08:00:30Z"))
	if got := f.runs("c"); len(got) != 2 {
		t.Fatalf("a tick older than the catch-up window ran: %v", got)
	}
	st = f.state("c")
	if st.Missed != 8+110 || !st.LastTick.Equal(mustTime("2026-12-06T08:00:00Z")) {
		t.Fatalf("missed %d (want 118), last tick %s", st.Missed, st.LastTick)
	}
	if got := testutil.ToFloat64(f.m.Tick("missed")); got != 118 {
		t.Fatalf("patrol_schedule_ticks_total{outcome=missed} = %v, want 118", got)
	}
	f.at(mustTime("2026-12-06T08:01:00Z"))
	if got := f.runs("c"); len(got) != 3 || got[2] != "c-20261206T080100Z" {
		t.Fatalf("the next tick on time did not run: %v", got)
	}
}

func TestScheduleOverlapPolicies(t *testing.T) {
	minute := func(m int) time.Time { return mustTime("2026-12-06T06:00:00Z").Add(time.Duration(m) * time.Minute) }
	t.Run("skip", func(t *testing.T) {
		f := dutySetup(t)
		f.create(queue.ScheduleSpec{Name: "s", EveryMS: 60_000}, "2026-12-06T06:00:00Z")
		f.at(minute(1))
		f.at(minute(2)) // the 06:01 run is still active
		if got := f.runs("s"); len(got) != 1 {
			t.Fatalf("runs %v, want only the first", got)
		}
		if st := f.state("s"); st.Skipped != 1 {
			t.Fatalf("skipped %d, want 1", st.Skipped)
		}
		f.finish("s-20261206T060100Z")
		f.at(minute(3))
		if got := f.runs("s"); len(got) != 2 || got[1] != "s-20261206T060300Z" {
			t.Fatalf("runs %v, want the 06:03 tick after the first finished", got)
		}
	})
	t.Run("buffer-one", func(t *testing.T) {
		f := dutySetup(t)
		f.create(queue.ScheduleSpec{Name: "b", EveryMS: 60_000, Overlap: queue.OverlapBufferOne}, "2026-12-06T06:00:00Z")
		f.at(minute(1))
		f.at(minute(2)) // buffered
		f.at(minute(3)) // replaces the buffered 06:02
		st := f.state("b")
		if st.Skipped != 1 || !st.Buffered.Equal(minute(3)) {
			t.Fatalf("skipped %d buffered %s; want 1 and 06:03", st.Skipped, st.Buffered)
		}
		f.finish("b-20261206T060100Z")
		f.at(minute(3).Add(20 * time.Second))
		if got, want := f.runs("b"), []string{"b-20261206T060100Z", "b-20261206T060300Z"}; !slices.Equal(got, want) {
			t.Fatalf("runs %v, want %v", got, want)
		}
	})
	t.Run("cancel-running", func(t *testing.T) {
		f := dutySetup(t)
		f.create(queue.ScheduleSpec{Name: "x", EveryMS: 60_000, Overlap: queue.OverlapCancel}, "2026-12-06T06:00:00Z")
		f.at(minute(1))
		f.at(minute(2))
		if got := f.runs("x"); len(got) != 2 {
			t.Fatalf("runs %v, want two", got)
		}
		if ok, err := f.q.CancelRequested(f.ctx, "x-20261206T060100Z"); err != nil || !ok {
			t.Fatalf("the running batch was not cancelled (%v, %v)", ok, err)
		}
	})
	t.Run("allow", func(t *testing.T) {
		f := dutySetup(t)
		f.create(queue.ScheduleSpec{Name: "a", EveryMS: 60_000, Overlap: queue.OverlapAllow}, "2026-12-06T06:00:00Z")
		for m := 1; m <= 3; m++ {
			f.at(minute(m))
		}
		if got := f.runs("a"); len(got) != 3 {
			t.Fatalf("runs %v, want three side by side", got)
		}
	})
}

func TestSchedulePauseResumeTrigger(t *testing.T) {
	f := dutySetup(t)
	f.create(queue.ScheduleSpec{Name: "p", EveryMS: 60_000, Overlap: queue.OverlapAllow}, "2026-12-06T06:00:00Z")
	f.at(mustTime("2026-12-06T06:01:00Z"))
	if _, err := f.q.UpdateSchedule(f.ctx, "p", nil, mustTime("2026-12-06T06:01:30Z"), func(s *queue.ScheduleSpec) error {
		s.Paused, s.PauseNote = true, "maintenance"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.at(mustTime("2026-12-06T06:05:00Z"))
	if got := f.runs("p"); len(got) != 1 {
		t.Fatalf("a paused schedule ran: %v", got)
	}
	// A trigger runs even while paused.
	if err := f.q.TriggerSchedule(f.ctx, "p", mustTime("2026-12-06T06:05:10Z")); err != nil {
		t.Fatal(err)
	}
	f.at(mustTime("2026-12-06T06:05:20Z"))
	f.at(mustTime("2026-12-06T06:05:30Z")) // the trigger is consumed: no second run
	if got, want := f.runs("p"), []string{"p-20261206T060100Z", "p-20261206T060510.000Z-trigger"}; !slices.Equal(got, want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	resume := mustTime("2026-12-06T06:07:30Z")
	if _, err := f.q.UpdateSchedule(f.ctx, "p", nil, resume, func(s *queue.ScheduleSpec) error {
		s.Paused, s.PauseNote, s.Since = false, "", resume
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.at(mustTime("2026-12-06T06:07:40Z"))
	f.at(mustTime("2026-12-06T06:08:00Z"))
	got := f.runs("p")
	if len(got) != 3 || got[2] != "p-20261206T060800Z" {
		t.Fatalf("after resume: runs %v; want the paused ticks not run and 06:08 run", got)
	}
	if st := f.state("p"); st.Missed != 0 {
		t.Fatalf("paused ticks counted missed: %d", st.Missed)
	}
}

func TestMalformedSchedulesAreQuarantinedOthersFire(t *testing.T) {
	f := dutySetup(t)
	f.create(queue.ScheduleSpec{Name: "good", EveryMS: 60_000}, "2026-12-06T06:00:00Z")
	cli := f.q.Client()
	keys := f.q.Keys()
	if _, err := cli.Put(f.ctx, keys.Schedule("garbage"), "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(f.ctx, keys.Schedule("badcron"), `{"name":"badcron","cron":"every tuesday","check":"noop","history":5}`); err != nil {
		t.Fatal(err)
	}
	// A schedule whose inventory went missing cannot fire either.
	f.create(queue.ScheduleSpec{Name: "nohosts", EveryMS: 60_000}, "2026-12-06T06:00:00Z")
	if _, err := cli.Delete(f.ctx, keys.ScheduleHosts("nohosts", ""), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	f.at(mustTime("2026-12-06T06:01:00Z"))
	if got := f.runs("good"); len(got) != 1 {
		t.Fatalf("good schedule runs %v, want one", got)
	}
	for _, name := range []string{"garbage", "badcron", "nohosts"} {
		resp, err := cli.Get(f.ctx, keys.Quarantine(keys.Schedule(name)))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("%s not quarantined (%v)", name, err)
		}
		if resp, _ := cli.Get(f.ctx, keys.Schedule(name)); len(resp.Kvs) != 0 {
			t.Fatalf("%s still in place", name)
		}
	}
	if got := testutil.ToFloat64(f.m.Malformed); got != 3 {
		t.Fatalf("patrol_schedule_malformed_total = %v, want 3", got)
	}
}

func TestScheduleHistoryKeepsTheLastRuns(t *testing.T) {
	f := dutySetup(t)
	f.create(queue.ScheduleSpec{Name: "h", EveryMS: 60_000, History: 2, Overlap: queue.OverlapAllow}, "2026-12-06T06:00:00Z")
	for m := 1; m <= 4; m++ {
		f.at(mustTime("2026-12-06T06:00:00Z").Add(time.Duration(m) * time.Minute))
	}
	runs := f.runs("h")
	for _, b := range runs[:3] {
		f.finish(b)
	}
	// The newest is still running; the pass after the prune interval
	// trims to the 2 newest.
	f.at(mustTime("2026-12-06T06:04:00Z").Add(schedulePrune))
	if got := f.runs("h"); !slices.Equal(got, runs[2:]) {
		t.Fatalf("runs kept %v, want %v", got, runs[2:])
	}
	for _, b := range runs[:2] {
		if _, err := f.q.LoadBatch(f.ctx, b); err == nil {
			t.Fatalf("batch %s outlived the schedule's history", b)
		}
	}
}

func TestDeposedDutyWritesNothing(t *testing.T) {
	f := dutySetup(t)
	f.create(queue.ScheduleSpec{Name: "d", EveryMS: 60_000}, "2026-12-06T06:00:00Z")
	if _, err := f.q.Client().Delete(f.ctx, f.fence.Key); err != nil { // the session ended
		t.Fatal(err)
	}
	f.clock.set(mustTime("2026-12-06T06:01:00Z"))
	if _, err := f.duty.runOnce(f.ctx, f.clock.Now()); err == nil || !strings.Contains(err.Error(), "not the leader") {
		t.Fatalf("a deposed duty's pass = %v, want ErrNotLeader", err)
	}
	if got := f.runs("d"); len(got) != 0 {
		t.Fatalf("a deposed duty created %v", got)
	}
	if _, err := f.q.LoadBatch(f.ctx, "d-20261206T060100Z"); err == nil {
		t.Fatal("a deposed duty's batch exists")
	}
}
