package queue_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/patrol-dev/patrol/queue"
)

// TestBrowsePagesAndLooksUp: results are paged by cursor, filtered by
// status within a scan budget and bounded by Until; one host is found
// wherever it stands; a host not in the batch is not found.
func TestBrowsePagesAndLooksUp(t *testing.T) {
	f := setup(t)
	spec, _ := f.submitAndShard(t, "browse", 10)
	lease := f.session(t, 10).Lease()
	g := f.claim(t, lease, "w1", 10)
	outs := finishAll(g, queue.StatusOK, "w1")
	outs[3] = finish(g, 3, queue.StatusFail, "w1")
	outs = slices.Delete(outs, 8, 10) // two hosts stay running
	if _, err := f.q.Commit(f.ctx, outs); err != nil {
		t.Fatal(err)
	}

	var all []string
	after := ""
	for {
		p, err := f.q.ResultsPage(f.ctx, spec.ID, queue.PageQuery{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Rows {
			all = append(all, r.Task)
		}
		if after = p.Next; after == "" {
			break
		}
	}
	if len(all) != 8 || !slices.IsSorted(all) {
		t.Fatalf("paged results: %v", all)
	}

	// A filter with a scan budget ends early, saying where to go on.
	p, err := f.q.ResultsPage(f.ctx, spec.ID, queue.PageQuery{Limit: 5, Want: map[queue.Status]bool{queue.StatusFail: true}, MaxScan: 2})
	if err != nil || len(p.Rows) != 0 || p.Next != all[1] || p.Scanned != 2 {
		t.Fatalf("budgeted filter: %+v %v", p, err)
	}
	p, err = f.q.ResultsPage(f.ctx, spec.ID, queue.PageQuery{Limit: 5, Want: map[queue.Status]bool{queue.StatusFail: true}})
	if err != nil || len(p.Rows) != 1 || p.Rows[0].Status != queue.StatusFail || p.Next != "" {
		t.Fatalf("fail filter: %+v %v", p, err)
	}
	// Until bounds the range: the page ends there and goes on from it.
	p, err = f.q.ResultsPage(f.ctx, spec.ID, queue.PageQuery{Limit: 5, Until: all[1]})
	if err != nil || len(p.Rows) != 2 || p.Next != all[1] {
		t.Fatalf("bounded page: %+v %v", p, err)
	}
	rows, _, err := f.q.ResultsOf(f.ctx, spec.ID, []string{all[2], "nosuch", all[0]})
	if err != nil || len(rows) != 2 || rows[0].Task != all[2] || rows[1].Task != all[0] {
		t.Fatalf("results of: %+v %v", rows, err)
	}

	running := g.Running.Tasks[8].Host.Name
	for host, want := range map[string]queue.Status{
		g.Running.Tasks[3].Host.Name: queue.StatusFail,
		running:                      queue.StatusRunning,
	} {
		r, err := f.q.HostStatus(f.ctx, spec, host)
		if err != nil || r.Status != want {
			t.Errorf("host %s: %+v %v, want %s", host, r, err, want)
		}
	}
	if _, err := f.q.HostStatus(f.ctx, spec, "stranger"); !errors.Is(err, queue.ErrHostNotFound) {
		t.Errorf("a host not in the batch: %v", err)
	}
	active, _, err := f.q.BatchIDs(f.ctx)
	if err != nil || !slices.Equal(active, []string{"browse"}) {
		t.Errorf("batch IDs: %v %v", active, err)
	}
	if n, err := f.q.CountRetrying(f.ctx, spec.ID); err != nil || n != 0 {
		t.Errorf("retrying: %d %v", n, err)
	}
}
