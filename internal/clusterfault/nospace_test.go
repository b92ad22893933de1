//go:build linux

package clusterfault

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/proctest"
)

// The NOSPACE scenario's cluster quota and the size of each batch that
// fills it.
const (
	nospaceQuota = 16 << 20
	fillHosts    = 20000
)

// runNOSPACE fills a cluster whose quota is 16 MiB with batches until
// Patrol refuses one because it would not fit, then fills the rest with
// another application's data until etcd raises its NOSPACE alarm, and
// walks the runbook's recovery: a submit under the alarm is refused with
// what to do and writes nothing; status says why nothing moves; cancel
// removes a batch's queued tasks with deletes only; the filling batches
// are deleted (with --force: they run); `patrol space --reclaim`
// compacts, defragments and disarms; then a batch runs and its
// invariants hold. It returns the report's NOSPACE line.
func runNOSPACE(t *testing.T) string {
	h := setup(t, clusterConfig{quota: nospaceQuota})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now()

	var accepted []string
	var refused *proctest.Proc
	var refusedBatch string
	for i := 1; refused == nil; i++ {
		if i > 20 {
			t.Fatalf("%d batches of %d hosts accepted, and none refused: is the %d MiB quota applied?", i-1, fillHosts, nospaceQuota>>20)
		}
		batch := fmt.Sprintf("fill-%d", i)
		path, _ := inventory(t, batch, fillHosts)
		p := h.run(2*time.Minute, "submit", "-i", path, "--check", "noop", "--param", "sleep="+batchSleep,
			"--batch-id", batch, "--timeout", attemptTimeout, "-o", "json")
		if err := p.Wait(t, time.Second); err != nil {
			refused, refusedBatch = p, batch
			continue
		}
		accepted = append(accepted, batch)
	}
	filled := time.Since(began)
	line := fmt.Sprintf("%d batches of %d hosts accepted (%s); fill-%d refused: %q", len(accepted), fillHosts, round(filled),
		len(accepted)+1, lastLine(refused))
	noSpec := func(batch string) {
		spec, err := h.c.cli.Get(ctx, h.keys.BatchSpec(batch), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("read the refused batch's spec: %v", err)
		}
		if spec.Count != 0 {
			t.Errorf("the refused submit of %s wrote its spec", batch)
		}
	}
	noSpec(refusedBatch)

	// Another application's data fills the rest: etcd raises NOSPACE.
	val := strings.Repeat("x", 256<<10)
	for i := 0; ; i++ {
		_, err := h.c.cli.Put(ctx, fmt.Sprintf("/other-app/%d", i), val)
		if err != nil && strings.Contains(err.Error(), "database space exceeded") {
			break
		}
		if err != nil || i > 200 {
			t.Fatalf("filling etcd: put %d: %v", i, err)
		}
	}
	if !h.noSpace(ctx) {
		t.Fatal("etcd took more than its quota and raised no NOSPACE alarm")
	}

	// Under the alarm: a submit is refused with what to do; status and
	// cancel work.
	path, _ := inventory(t, "under-alarm", 10)
	p := h.run(time.Minute, "submit", "-i", path, "--check", "noop", "--batch-id", "under-alarm")
	if err := p.Wait(t, time.Second); err == nil || !strings.Contains(lastLine(p), "etcd is out of space (NOSPACE alarm") ||
		!strings.Contains(lastLine(p), "nothing was written") {
		t.Errorf("submit under NOSPACE: %v %q, want a refusal that names the alarm and the remedy", err, lastLine(p))
	}
	noSpec("under-alarm")
	victim := accepted[0]
	var status struct{ State string }
	if err := json.Unmarshal(h.mustRun(time.Minute, "status", victim, "-o", "json"), &status); err != nil ||
		!strings.Contains(status.State, "etcd is out of space") {
		t.Errorf("status %s under NOSPACE: state %q (%v), want it to say etcd is out of space", victim, status.State, err)
	}
	if out := string(h.mustRun(time.Minute, "cancel", victim)); !strings.Contains(out, "queued tasks instead") {
		t.Errorf("cancel %s under NOSPACE: %q", victim, out)
	}
	line += fmt.Sprintf("; under the alarm: submit refused %q, status %q, cancel removed the queued tasks", lastLine(p), status.State)

	// Recovery: free space, reclaim, run a batch.
	recovering := time.Now()
	if _, err := h.c.cli.Delete(ctx, "/other-app/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete the other application's data under NOSPACE: %v", err)
	}
	for _, b := range accepted {
		h.mustRun(time.Minute, "delete", "--force", b)
	}
	out := string(h.mustRun(5*time.Minute, "space", "--reclaim"))
	if !strings.Contains(out, "disarmed NOSPACE") || h.noSpace(ctx) {
		t.Fatalf("space --reclaim left the alarm:\n%s", out)
	}
	hosts, _ := h.submit("after", 200, batchSleep)
	h.mustRun(3*time.Minute, "watch", "after")
	// Groups of the deleted batches that workers held through the alarm
	// go when their worker commits or releases them, or when the leader
	// revokes them as overdue (--timeout plus 5 s after the claim), as in
	// the other scenarios: the invariants are checked once they have.
	if held := h.tl.heldGroups(); held > 0 {
		finished := time.Now()
		gone := h.tl.awaitNoneHeld(t, 2*time.Minute)
		line += fmt.Sprintf("; %d groups of the deleted batches still held when the next batch finished, gone %s later",
			held, round(gone.Sub(finished)))
	}
	o := h.checkInvariants("after", hosts)
	line += fmt.Sprintf("; recovered in %s (delete, space --reclaim), the next batch ran: %v", round(time.Since(recovering)), o.statuses)
	if exited := h.exited(); len(exited) > 0 {
		line += fmt.Sprintf("; exited: %s", strings.Join(exited, ", "))
	}
	t.Log(line)
	return line
}

// noSpace reports whether etcd's NOSPACE alarm is raised.
func (h *harness) noSpace(ctx context.Context) bool {
	h.t.Helper()
	alarms, err := h.c.cli.AlarmList(ctx)
	if err != nil {
		h.t.Fatalf("list etcd's alarms: %v", err)
	}
	for _, a := range alarms.Alarms {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			return true
		}
	}
	return false
}

// lastLine is the last line a process wrote to stderr.
func lastLine(p *proctest.Proc) string {
	lines := p.Stderr()
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}
