package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// TestScheduleCollector fires two runs of a schedule in a real etcd, the
// second with a host newly failing, and checks what a scrape reports.
func TestScheduleCollector(t *testing.T) {
	env := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := queue.New(env.Client, env.Prefix)
	t0 := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	hosts := zoneHosts("dc1", 3)
	if _, err := q.CreateSchedule(ctx, queue.ScheduleSpec{Name: "ssh", EveryMS: 60_000, Check: "noop", CreatedAt: t0}, hosts); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CreateSchedule(ctx, queue.ScheduleSpec{Name: "idle", EveryMS: 60_000, Check: "noop", CreatedAt: t0, Paused: true}, hosts); err != nil {
		t.Fatal(err)
	}
	sess, err := concurrency.NewSession(q.Client(), concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, q.Keys().Election())
	if err := el.Campaign(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	fence := queue.Fence{Key: el.Key(), Rev: el.Rev()}
	for i, failing := range []int{0, 1} {
		rec, err := q.Schedule(ctx, "ssh")
		if err != nil {
			t.Fatal(err)
		}
		tick := t0.Add(time.Duration(i+1) * time.Minute)
		st := rec.State
		st.LastTick, st.Fired, st.Missed = tick, st.Fired+1, 2
		id, _, err := q.FireSchedule(ctx, fence, rec, queue.Fire{Tick: tick, State: st, Now: tick})
		if err != nil {
			t.Fatal(err)
		}
		sum := queue.Summary{Total: 3, Counts: map[queue.Status]int{queue.StatusOK: 3 - failing, queue.StatusFail: failing}, FinishedAt: tick.Add(time.Second)}
		for j, h := range hosts {
			status := queue.StatusOK
			if j < failing {
				status = queue.StatusFail
			}
			if _, err := env.Client.Put(ctx, q.Keys().Result(id, queue.TaskID(h.Name)), fmt.Sprintf(`{"host":%q,"status":%q,"attempts":1}`, h.Name, status)); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Finish(ctx, fence, id, sum); err != nil {
			t.Fatal(err)
		}
	}
	next := func(s queue.ScheduleSpec, st queue.ScheduleState) time.Time { return st.LastTick.Add(s.Every()) }
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewScheduleCollector(q, next))
	want := `
# HELP patrol_schedule_last_run_hosts Hosts of the schedule's newest finished run, by final status.
# TYPE patrol_schedule_last_run_hosts gauge
patrol_schedule_last_run_hosts{schedule="ssh",status="cancelled"} 0
patrol_schedule_last_run_hosts{schedule="ssh",status="dead"} 0
patrol_schedule_last_run_hosts{schedule="ssh",status="error"} 0
patrol_schedule_last_run_hosts{schedule="ssh",status="fail"} 1
patrol_schedule_last_run_hosts{schedule="ssh",status="ok"} 2
patrol_schedule_last_run_hosts{schedule="ssh",status="skipped"} 0
patrol_schedule_last_run_hosts{schedule="ssh",status="warn"} 0
# HELP patrol_schedule_newly_failing_hosts Hosts failing in the schedule's newest finished run that passed in the run before.
# TYPE patrol_schedule_newly_failing_hosts gauge
patrol_schedule_newly_failing_hosts{schedule="ssh"} 1
# HELP patrol_schedule_paused 1 while the schedule is paused, else 0.
# TYPE patrol_schedule_paused gauge
patrol_schedule_paused{schedule="idle"} 1
patrol_schedule_paused{schedule="ssh"} 0
# HELP patrol_schedule_missed_runs_total Ticks of the schedule missed: due while no scheduler fired them, and not run by the catch-up rule.
# TYPE patrol_schedule_missed_runs_total counter
patrol_schedule_missed_runs_total{schedule="idle"} 0
patrol_schedule_missed_runs_total{schedule="ssh"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "patrol_schedule_last_run_hosts", "patrol_schedule_newly_failing_hosts",
		"patrol_schedule_paused", "patrol_schedule_missed_runs_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if len(m.Label) == 1 && m.Label[0].GetValue() == "ssh" && m.Gauge != nil {
				got[mf.GetName()] = m.Gauge.GetValue()
			}
		}
	}
	for name, want := range map[string]time.Time{
		"patrol_schedule_next_run_timestamp_seconds":     t0.Add(3 * time.Minute),
		"patrol_schedule_last_run_timestamp_seconds":     t0.Add(2 * time.Minute),
		"patrol_schedule_last_success_timestamp_seconds": t0.Add(time.Minute + time.Second), // the first run: all passed
	} {
		if got[name] != float64(want.Unix()) {
			t.Errorf("%s = %v, want %v (%s)", name, got[name], want.Unix(), want)
		}
	}
}
