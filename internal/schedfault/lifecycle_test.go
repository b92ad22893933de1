//go:build linux

package schedfault

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

// awaitWitness waits until the schedule "witness" (every 1 s, overlap
// allow) has a run for a tick at or after tick. The leader reads every
// schedule at the start of a pass, after taking the pass's time, and
// fires every schedule's due ticks in it: a witness run for tick T means
// a pass that began at T or later has read the schedules.
func (h *harness) awaitWitness(ctx context.Context, tick time.Time) {
	h.t.Helper()
	_, err := etcdtest.Wait(ctx, h.env.Client, h.keys.ScheduleRuns("witness"), func(r *clientv3.GetResponse) bool {
		return slices.ContainsFunc(r.Kvs, func(kv *mvccpb.KeyValue) bool {
			t, err := time.Parse(time.RFC3339Nano, string(kv.Value))
			return err == nil && !t.Before(tick)
		})
	})
	if err != nil {
		h.t.Fatalf("waiting for the witness schedule's tick %s: %v", tick, err)
	}
}

// TestDeleteWhileARunIsInFlight: `patrol schedule delete` while the
// schedule's run is being checked. The run finishes (every host a
// result), and no tick fires after the delete, though the leader keeps
// passing over the schedules (the witness schedule fires on).
func TestDeleteWhileARunIsInFlight(t *testing.T) {
	h := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	h.startScheduler()
	h.startWorker("w1")
	h.run("schedule", "create", "witness", "-i", inventory(t, "witness", 1), "--check", "noop", "--every", "1s", "--overlap", "allow")
	// Each run lasts 5 s, longer than the delete takes: it is in flight.
	h.run("schedule", "create", "inflight", "-i", inventory(t, "inflight", 3), "--check", "noop", "--param", "sleep=5s", "--every", "1s")
	h.awaitRuns(ctx, "inflight", 1)
	runs, err := h.q.ScheduleRuns(ctx, "inflight")
	if err != nil {
		t.Fatal(err)
	}
	run := runs[0].Batch

	h.run("schedule", "delete", "inflight")
	deleted := time.Now()
	if active, err := h.q.Active(ctx, run); err != nil || !active {
		t.Fatalf("run %s not active right after the delete (%v, %v): the 5 s run was not in flight", run, active, err)
	}
	// The run finishes: its active index entry goes, its summary counts
	// every host.
	if _, err := etcdtest.Wait(ctx, h.env.Client, h.keys.ActiveBatch(run), func(r *clientv3.GetResponse) bool {
		return !slices.ContainsFunc(r.Kvs, func(kv *mvccpb.KeyValue) bool { return string(kv.Key) == h.keys.ActiveBatch(run) })
	}); err != nil {
		t.Fatalf("waiting for run %s to finish: %v", run, err)
	}
	sum, done, err := h.q.Summary(ctx, run)
	if err != nil || !done {
		t.Fatalf("run %s: summary %v, %v", run, done, err)
	}
	if sum.Total != 3 || sum.Counts[queue.StatusOK] != 3 {
		t.Errorf("run %s finished with %+v, want its 3 hosts ok", run, sum.Counts)
	}
	// No tick after the delete: wait until the leader has passed over the
	// schedules at a tick after it, twice over.
	cad, _ := scheduler.ParseCadence("", time.Second)
	h.awaitWitness(ctx, cad.Next(cad.Next(deleted)))
	for _, b := range h.scheduleBatches(ctx, "inflight") {
		if !b.ScheduledFor.Before(deleted) {
			t.Errorf("batch %s for tick %s, after the schedule was deleted at %s", b.ID, b.ScheduledFor, deleted)
		}
	}
	if keys := etcdtest.Keys(t, h.env.Client, h.keys.ScheduleRuns("inflight")); len(keys) != 0 {
		t.Errorf("the deleted schedule's run index outlived it: %v", keys)
	}
}

// TestUpdateRacingTheTicks: `patrol schedule update -i` lands again and
// again just before, at and just after a tick of a schedule every second.
// No tick has two batches, every tick is run or counted, and a batch
// created after an update returned has that update's inventory (or a
// later one's): a fire is on the spec it read, or refused.
func TestUpdateRacingTheTicks(t *testing.T) {
	h := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	h.startScheduler()
	h.startWorker("w1")
	const name = "racing"
	h.run("schedule", "create", name, "-i", inventory(t, name, 2), "--check", "noop", "--every", "1s", "--overlap", "allow",
		"--history", fmt.Sprint(queue.MaxHistory))
	h.awaitRuns(ctx, name, 1)

	cad, _ := scheduler.ParseCadence("", time.Second)
	type update struct {
		hosts    int
		returned time.Time
	}
	var updates []update
	// Inventory k has k+3 hosts: a batch's host count says which update
	// it ran on. Update k is started lead[k] before tick k (after it, for
	// a negative lead): the CLI lands some 30 ms after it starts, and the
	// leader's pass reads and fires within milliseconds of the tick.
	const ms = time.Millisecond
	leads := []time.Duration{60 * ms, 45 * ms, 30 * ms, 20 * ms, 10 * ms, 0, -10 * ms, -25 * ms}
	tick := cad.Next(time.Now().Add(time.Second))
	for k, lead := range leads {
		<-time.After(time.Until(tick.Add(-lead))) // the race's timing, not a synchronisation
		n := k + 3
		h.run("schedule", "update", name, "-i", inventory(t, fmt.Sprintf("%s%d", name, k), n))
		updates = append(updates, update{hosts: n, returned: time.Now()})
		tick = cad.Next(tick)
	}
	last := cad.Next(updates[len(updates)-1].returned)
	h.awaitState(ctx, name, "a tick after the last update dealt with", func(st queue.ScheduleState) bool { return !st.LastTick.Before(last) })
	for _, p := range h.scheds {
		for _, l := range p.Logs("malformed schedule record quarantined") {
			t.Errorf("the leader took an update racing its fire for a malformed schedule: %s", l.Str("error"))
		}
		p.Stop(t)
	}

	rec, err := h.q.Schedule(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	st := rec.State
	var ticks []time.Time
	for tk := cad.Next(rec.Spec.Since); !tk.After(st.LastTick); tk = cad.Next(tk) {
		ticks = append(ticks, tk)
	}
	batches := h.scheduleBatches(ctx, name)
	byTick := map[time.Time]int{}
	var hosts []string
	for _, b := range batches {
		byTick[b.ScheduledFor.UTC()]++
		hosts = append(hosts, fmt.Sprintf("%s:%d", b.ScheduledFor.UTC().Format("15:04:05"), b.Hosts))
		for _, u := range updates {
			if b.CreatedAt.After(u.returned) && b.Hosts < u.hosts {
				t.Errorf("batch %s created %s after an update returned has %d hosts, the update's inventory has %d",
					b.ID, b.CreatedAt.Sub(u.returned).Round(time.Millisecond), b.Hosts, u.hosts)
			}
		}
		if b.Hosts < 2 || b.Hosts > updates[len(updates)-1].hosts {
			t.Errorf("batch %s has %d hosts: no inventory the schedule ever had", b.ID, b.Hosts)
		}
	}
	for tk, n := range byTick {
		if n > 1 {
			t.Errorf("tick %s has %d batches", tk, n)
		}
	}
	if int(st.Fired) != len(batches) {
		t.Errorf("the state counts %d fired, there are %d batches", st.Fired, len(batches))
	}
	if got := int(st.Fired + st.Missed + st.Skipped); got != len(ticks) {
		t.Errorf("%d ticks from the start to the last dealt with, %d fired + %d missed + %d skipped = %d: a tick was lost",
			len(ticks), st.Fired, st.Missed, st.Skipped, got)
	}
	t.Logf("%d updates; %d ticks: %d fired, %d missed; runs (tick:hosts) %s", len(updates), len(ticks), st.Fired, st.Missed, strings.Join(hosts, " "))
}
