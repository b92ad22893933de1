package queue_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

var t0 = time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)

func (f *fixture) schedule(t testing.TB, name string, n int) queue.ScheduleRecord {
	t.Helper()
	if _, err := f.q.CreateSchedule(f.ctx, queue.ScheduleSpec{Name: name, EveryMS: 60_000, Check: "noop", CreatedAt: t0}, hosts(n)); err != nil {
		t.Fatal(err)
	}
	rec, err := f.q.Schedule(f.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// keyCount counts the keys under the test's prefix.
func (f *fixture) keyCount(t testing.TB) int64 {
	t.Helper()
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().All(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func fire(tick time.Time, st queue.ScheduleState) queue.Fire {
	st.LastTick = tick
	st.Fired++
	return queue.Fire{Tick: tick, State: st, Now: tick}
}

func TestScheduleBadInputWritesNothing(t *testing.T) {
	f := setup(t)
	f.schedule(t, "taken", 2)
	before := f.keyCount(t)
	good := queue.ScheduleSpec{Name: "s", EveryMS: 60_000, Check: "noop"}
	for _, tc := range []struct {
		name  string
		spec  func(*queue.ScheduleSpec)
		hosts []inventory.Host
		want  string
	}{
		{"taken", func(s *queue.ScheduleSpec) { s.Name = "taken" }, hosts(1), "already exists"},
		{"bad name", func(s *queue.ScheduleSpec) { s.Name = "a/b" }, hosts(1), "name"},
		{"long name", func(s *queue.ScheduleSpec) { s.Name = strings.Repeat("x", 35) }, hosts(1), "name"},
		{"no cadence", func(s *queue.ScheduleSpec) { s.EveryMS = 0 }, hosts(1), "exactly one"},
		{"both", func(s *queue.ScheduleSpec) { s.Cron = "@daily" }, hosts(1), "exactly one"},
		{"every under 1s", func(s *queue.ScheduleSpec) { s.EveryMS = 500 }, hosts(1), "at least 1s"},
		{"overlap", func(s *queue.ScheduleSpec) { s.Overlap = "sometimes" }, hosts(1), "overlap policy"},
		{"catch-up", func(s *queue.ScheduleSpec) { s.CatchupMS = (31 * 24 * time.Hour).Milliseconds() }, hosts(1), "catchup-window"},
		{"jitter", func(s *queue.ScheduleSpec) { s.JitterMS = 60_000 }, hosts(1), "jitter"},
		{"history", func(s *queue.ScheduleSpec) { s.History = queue.MaxHistory + 1 }, hosts(1), "history"},
		{"no hosts", func(*queue.ScheduleSpec) {}, nil, "no hosts"},
		{"bad zone", func(*queue.ScheduleSpec) {}, []inventory.Host{{Name: "a", Vars: map[string]string{"zone": "a/b"}}}, "zone"},
	} {
		spec := good
		tc.spec(&spec)
		_, err := f.q.CreateSchedule(f.ctx, spec, tc.hosts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := f.q.UpdateSchedule(f.ctx, "nosuch", nil, t0, func(*queue.ScheduleSpec) error { return nil }); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Errorf("update of an unknown schedule: %v", err)
	}
	if _, err := f.q.UpdateSchedule(f.ctx, "taken", nil, t0, func(s *queue.ScheduleSpec) error { s.EveryMS = 10; return nil }); err == nil {
		t.Error("update to --every 10ms was accepted")
	}
	for _, err := range []error{f.q.DeleteSchedule(f.ctx, "nosuch"), f.q.TriggerSchedule(f.ctx, "nosuch", t0)} {
		if !errors.Is(err, queue.ErrScheduleNotFound) {
			t.Errorf("unknown schedule: %v", err)
		}
	}
	if after := f.keyCount(t); after != before {
		t.Fatalf("refused input wrote %d keys", after-before)
	}
}

func TestFireScheduleExactlyOncePerTick(t *testing.T) {
	f := setup(t)
	fence, _ := f.lead(t)
	rec := f.schedule(t, "s", 130) // more than one chunk's worth of ops
	tick := t0.Add(time.Minute)
	// Many attempts at one tick at once, as after a lost reply or by two
	// leaders' views: one batch.
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 8 {
		wg.Go(func() {
			_, ok, err := f.q.FireSchedule(f.ctx, fence, rec, fire(tick, rec.State))
			if err != nil && !errors.Is(err, queue.ErrConflict) {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d attempts created the tick's batch; want exactly 1", created)
	}
	spec, err := f.q.LoadBatch(f.ctx, "s-20261206T060100Z")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Schedule != "s" || !spec.ScheduledFor.Equal(tick) || spec.Hosts != 130 {
		t.Fatalf("batch spec %+v", spec)
	}
	got, err := f.q.LoadHosts(f.ctx, spec)
	if err != nil || len(got) != 130 {
		t.Fatalf("the batch's own copy of the inventory: %d hosts, %v", len(got), err)
	}
	// The stale record (state changed) is refused, the next read fires
	// again as "already there".
	if _, _, err := f.q.FireSchedule(f.ctx, fence, rec, fire(tick.Add(time.Minute), rec.State)); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("fire on a stale record: %v, want ErrConflict", err)
	}
	// Orphaned chunks of the losing attempts are deleted: one inventory
	// copy per batch.
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().Batch("s-20261206T060100Z")+"hosts/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	nonces := map[string]bool{}
	for _, kv := range resp.Kvs {
		nonces[strings.Split(strings.TrimPrefix(string(kv.Key), f.q.Keys().Batch("s-20261206T060100Z")+"hosts/"), "/")[0]] = true
	}
	if len(nonces) != 1 {
		t.Fatalf("inventory copies left under the batch: %d", len(nonces))
	}
}

func TestFireScheduleIsFenced(t *testing.T) {
	f := setup(t)
	fence, sess := f.lead(t)
	rec := f.schedule(t, "s", 2)
	sess.Close() // the leader's session ends: its election key goes
	if _, _, err := f.q.FireSchedule(f.ctx, fence, rec, fire(t0.Add(time.Minute), rec.State)); !errors.Is(err, queue.ErrNotLeader) {
		t.Fatalf("a deposed leader's fire: %v, want ErrNotLeader", err)
	}
	if err := f.q.SetScheduleState(f.ctx, fence, rec, queue.ScheduleState{Missed: 1}); !errors.Is(err, queue.ErrNotLeader) {
		t.Fatalf("a deposed leader's state write: %v, want ErrNotLeader", err)
	}
	if _, err := f.q.LoadBatch(f.ctx, "s-20261206T060100Z"); !errors.Is(err, queue.ErrBatchNotFound) {
		t.Fatalf("a deposed leader created the batch: %v", err)
	}
}

func TestUpdateRacingATick(t *testing.T) {
	f := setup(t)
	fence, _ := f.lead(t)
	rec := f.schedule(t, "s", 3)
	// The update lands between the leader's read and its fire: the fire
	// is refused, and the next read fires on the new inventory.
	if _, err := f.q.UpdateSchedule(f.ctx, "s", hosts(5), t0, func(*queue.ScheduleSpec) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The update deleted the inventory version rec names: a lost race
	// (read again), not a malformed schedule to quarantine.
	if _, _, err := f.q.FireSchedule(f.ctx, fence, rec, fire(t0.Add(time.Minute), rec.State)); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("a fire on the spec before an update: %v, want ErrConflict", err)
	}
	rec2, err := f.q.Schedule(f.ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f.q.FireSchedule(f.ctx, fence, rec2, fire(t0.Add(time.Minute), rec2.State)); err != nil || !ok {
		t.Fatalf("fire on the new spec: %v %v", ok, err)
	}
	spec, _ := f.q.LoadBatch(f.ctx, "s-20261206T060100Z")
	if spec.Hosts != 5 {
		t.Fatalf("the run has %d hosts, want the updated 5", spec.Hosts)
	}
	// The old inventory version is gone with the update: one version kept.
	resp, _ := f.env.Client.Get(f.ctx, f.q.Keys().ScheduleHosts("s", ""), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	versions := map[string]bool{}
	for _, kv := range resp.Kvs {
		versions[strings.Split(strings.TrimPrefix(string(kv.Key), f.q.Keys().ScheduleHosts("s", "")), "/")[0]] = true
	}
	if len(versions) != 1 || !versions[rec2.Spec.Nonce] {
		t.Fatalf("inventory versions %v, want only %s", versions, rec2.Spec.Nonce)
	}
}

func TestDeleteWhileARunIsInFlight(t *testing.T) {
	f := setup(t)
	fence, _ := f.lead(t)
	rec := f.schedule(t, "s", 3)
	if _, _, err := f.q.FireSchedule(f.ctx, fence, rec, fire(t0.Add(time.Minute), rec.State)); err != nil {
		t.Fatal(err)
	}
	rec, _ = f.q.Schedule(f.ctx, "s")
	if err := f.q.DeleteSchedule(f.ctx, "s"); err != nil {
		t.Fatal(err)
	}
	// The run goes on; no later tick can fire.
	if ok, err := f.q.Active(f.ctx, "s-20261206T060100Z"); err != nil || !ok {
		t.Fatalf("the run in flight is not active any more: %v %v", ok, err)
	}
	if _, _, err := f.q.FireSchedule(f.ctx, fence, rec, fire(t0.Add(2*time.Minute), rec.State)); err == nil {
		t.Fatal("a tick fired after the schedule was deleted")
	}
	resp, _ := f.env.Client.Get(f.ctx, f.q.Keys().ScheduleHosts("s", ""), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 0 {
		t.Fatalf("%d inventory keys outlived the schedule", resp.Count)
	}
}

func TestChangesBetweenRuns(t *testing.T) {
	f := setup(t)
	fence, _ := f.lead(t)
	f.schedule(t, "s", 3)
	// Four runs; host-00001 fails from the second on, host-00002 fails in
	// the third only.
	statuses := [][]queue.Status{
		{queue.StatusOK, queue.StatusOK, queue.StatusOK},
		{queue.StatusOK, queue.StatusFail, queue.StatusOK},
		{queue.StatusOK, queue.StatusFail, queue.StatusDead},
		{queue.StatusOK, queue.StatusDead, queue.StatusOK},
	}
	var ids []string
	for i, sts := range statuses {
		rec, _ := f.q.Schedule(f.ctx, "s")
		tick := t0.Add(time.Duration(i+1) * time.Minute)
		id, ok, err := f.q.FireSchedule(f.ctx, fence, rec, fire(tick, rec.State))
		if err != nil || !ok {
			t.Fatalf("fire %d: %v %v", i, ok, err)
		}
		ids = append(ids, id)
		for j, st := range sts {
			h := hosts(3)[j].Name
			if _, err := f.env.Client.Put(f.ctx, f.q.Keys().Result(id, queue.TaskID(h)), fmt.Sprintf(`{"host":%q,"status":%q,"attempts":1}`, h, st)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ch, err := f.q.Changes(f.ctx, ids[3])
	if err != nil {
		t.Fatal(err)
	}
	if ch.Previous != ids[2] || len(ch.Changes) != 2 {
		t.Fatalf("changes %+v", ch)
	}
	rec0, rec1 := ch.Changes[0], ch.Changes[1]
	if rec0.Host != "host-00002:22" || rec0.Change != queue.ChangeRecovered || rec0.Before != queue.StatusDead {
		t.Fatalf("first change %+v, want host-00002 recovered", rec0)
	}
	if rec1.Host != "host-00001:22" || rec1.Change != queue.ChangeChanged || rec1.FailingRuns != 3 || !rec1.FailingSince.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("second change %+v, want host-00001 failing for 3 runs since 06:02", rec1)
	}
	ch, err = f.q.Changes(f.ctx, ids[1])
	if err != nil || len(ch.Changes) != 1 || ch.Changes[0].Change != queue.ChangeNewlyFailing || ch.Changes[0].FailingRuns != 1 {
		t.Fatalf("changes of the second run %+v %v", ch, err)
	}
	if ch, err := f.q.Changes(f.ctx, ids[0]); err != nil || ch.Previous != "" {
		t.Fatalf("the first run compares with %q (%v)", ch.Previous, err)
	}
	f.submit(t, "plain", 1)
	if _, err := f.q.Changes(f.ctx, "plain"); !errors.Is(err, queue.ErrNotScheduled) {
		t.Fatalf("changes of a submitted batch: %v", err)
	}
	// Runs newest first, for `patrol batches --schedule`.
	list, err := f.q.ScheduleBatches(f.ctx, "s", 2)
	if err != nil || len(list) != 2 || list[0].Spec.ID != ids[3] || list[1].Spec.ID != ids[2] {
		t.Fatalf("schedule batches %v %v", list, err)
	}
}

func TestCleanScheduleUploads(t *testing.T) {
	f := setup(t)
	fence, _ := f.lead(t)
	rec := f.schedule(t, "s", 2)
	k := f.q.Keys()
	put := func(key, val string) {
		if _, err := f.env.Client.Put(f.ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	// An update that died after its chunks (an hour ago), one still
	// uploading (now), and one of a schedule that was never created.
	put(k.ScheduleHosts("s", "dead")+"started", t0.Add(-time.Hour).Format(time.RFC3339))
	put(k.ScheduleHostChunk("s", "dead", 0), "[]")
	put(k.ScheduleHosts("s", "busy")+"started", t0.Format(time.RFC3339))
	put(k.ScheduleHosts("gone", "x")+"started", t0.Add(-time.Hour).Format(time.RFC3339))
	n, err := f.q.CleanScheduleUploads(f.ctx, fence, t0.Add(-10*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("cleaned %d (%v), want 2", n, err)
	}
	resp, _ := f.env.Client.Get(f.ctx, k.ScheduleInventories(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	left := map[string]bool{}
	for _, kv := range resp.Kvs {
		left[strings.Split(strings.TrimPrefix(string(kv.Key), k.ScheduleInventories()), "/")[1]] = true
	}
	if len(left) != 2 || !left["busy"] || !left[rec.Spec.Nonce] {
		t.Fatalf("versions left %v, want busy and the current %s", left, rec.Spec.Nonce)
	}
	if _, err := f.q.LoadScheduleHosts(f.ctx, rec.Spec); err != nil {
		t.Fatalf("the current inventory: %v", err)
	}
}
