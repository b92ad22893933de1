package queue

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ScheduleBatches returns a schedule's runs still in etcd, newest first, at
// most limit (0: all), as Batches lists batches.
func (q *Queue) ScheduleBatches(ctx context.Context, name string, limit int) ([]BatchInfo, error) {
	runs, err := q.ScheduleRuns(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []BatchInfo
	for i := len(runs) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		spec, err := q.LoadBatch(ctx, runs[i].Batch)
		if errors.Is(err, ErrBatchNotFound) || errors.Is(err, ErrBadValue) {
			continue // purged by the global retention, or unreadable
		}
		if err != nil {
			return nil, err
		}
		out = append(out, BatchInfo{Spec: spec})
	}
	return out, q.fillBatchInfo(ctx, out)
}

// fillBatchInfo adds each batch's summary, or its progress while it runs.
func (q *Queue) fillBatchInfo(ctx context.Context, out []BatchInfo) error {
	for i := range out {
		id := out[i].Spec.ID
		s, done, err := q.Summary(ctx, id)
		if err != nil {
			return err
		}
		if done {
			out[i].Summary = &s
		} else {
			out[i].Active = true
			pub, _, err := q.ResultCounts(ctx, id)
			if err != nil {
				return err
			}
			out[i].Progress = pub.Counts.Done()
		}
	}
	return nil
}

// HostChange is a host whose status differs between a schedule's run and
// the run before it.
type HostChange struct {
	Host   string `json:"host"`
	Before Status `json:"before,omitempty"` // "" when the host was not in the run before
	After  Status `json:"after,omitempty"`  // "" when the host is not in this run
	// Change is "newly failing", "recovered", "changed", "new" or "gone".
	Change string `json:"change"`
	// For a host failing in this run: how many runs in a row, this one
	// included, it has failed, and the first of them.
	FailingRuns  int       `json:"failing_runs,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
}

// Host changes.
const (
	ChangeNewlyFailing = "newly failing"
	ChangeRecovered    = "recovered"
	ChangeChanged      = "changed"
	ChangeNew          = "new"
	ChangeGone         = "gone"
)

// RunChanges is what changed in a schedule's run since the one before.
type RunChanges struct {
	Schedule string       `json:"schedule"`
	Batch    string       `json:"batch_id"`
	Previous string       `json:"previous,omitempty"` // "" when it is the first run kept
	Changes  []HostChange `json:"changes"`
}

// ErrNotScheduled is a batch that no schedule fired, where a schedule's
// run is needed.
var ErrNotScheduled = errors.New("queue: batch was not fired by a schedule")

// Changes compares a schedule's run with the run before it (the newest
// older run still in etcd): every host whose status differs, and for hosts
// failing now, since which run they have been failing. Only results
// committed so far count: a run still going shows the hosts finished.
func (q *Queue) Changes(ctx context.Context, batch string) (RunChanges, error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil {
		return RunChanges{}, err
	}
	if spec.Schedule == "" {
		return RunChanges{}, fmt.Errorf("%w: %s was submitted, not fired by a schedule; --changes compares a schedule's runs", ErrNotScheduled, batch)
	}
	runs, err := q.ScheduleRuns(ctx, spec.Schedule)
	if err != nil {
		return RunChanges{}, err
	}
	i := slices.IndexFunc(runs, func(r ScheduleRun) bool { return r.Batch == batch })
	if i < 0 {
		return RunChanges{}, fmt.Errorf("%w: %s is not in schedule %s's history any more", ErrNotScheduled, batch, spec.Schedule)
	}
	out := RunChanges{Schedule: spec.Schedule, Batch: batch, Changes: []HostChange{}}
	cur, err := q.Tally(ctx, batch)
	if err != nil {
		return RunChanges{}, err
	}
	// The runs before, newest first, whose tallies are read as needed.
	var older []string
	for j := i - 1; j >= 0; j-- {
		older = append(older, runs[j].Batch)
	}
	tallies := map[string]map[string]Status{}
	tally := func(b string) (map[string]Status, bool, error) {
		if t, ok := tallies[b]; ok {
			return t, t != nil, nil
		}
		t, err := q.Tally(ctx, b)
		if err != nil {
			return nil, false, err
		}
		if len(t) == 0 {
			if _, err := q.LoadBatch(ctx, b); errors.Is(err, ErrBatchNotFound) {
				t = nil // purged: not a run to compare with
			}
		}
		tallies[b] = t
		return t, t != nil, nil
	}
	var prev map[string]Status
	for _, b := range older {
		t, ok, err := tally(b)
		if err != nil {
			return RunChanges{}, err
		}
		if ok {
			prev, out.Previous = t, b
			break
		}
	}
	if out.Previous == "" {
		return out, nil
	}
	tasks := map[string]bool{}
	for task := range cur {
		tasks[task] = true
	}
	for task := range prev {
		tasks[task] = true
	}
	for _, task := range slices.Sorted(func(yield func(string) bool) {
		for t := range tasks {
			if !yield(t) {
				return
			}
		}
	}) {
		before, after := prev[task], cur[task]
		if before == after {
			continue
		}
		host, err := url.PathUnescape(task)
		if err != nil {
			host = task
		}
		c := HostChange{Host: host, Before: before, After: after}
		switch {
		case after == "":
			c.Change = ChangeGone
		case before == "":
			c.Change = ChangeNew
		case after.Failed() && !before.Failed():
			c.Change = ChangeNewlyFailing
		case before.Failed() && after.Passed():
			c.Change = ChangeRecovered
		default:
			c.Change = ChangeChanged
		}
		out.Changes = append(out.Changes, c)
	}
	// Failing since: walk back while the host kept failing.
	for k := range out.Changes {
		c := &out.Changes[k]
		if !c.After.Failed() {
			continue
		}
		task := TaskID(c.Host)
		c.FailingRuns, c.FailingSince = 1, spec.ScheduledFor
		for _, b := range older {
			t, ok, err := tally(b)
			if err != nil {
				return RunChanges{}, err
			}
			if !ok {
				continue
			}
			if !t[task].Failed() {
				break
			}
			c.FailingRuns++
			if s, err := q.LoadBatch(ctx, b); err == nil {
				c.FailingSince = s.ScheduledFor
			}
		}
	}
	slices.SortStableFunc(out.Changes, func(a, b HostChange) int {
		return strings.Compare(changeOrder(a.Change), changeOrder(b.Change))
	})
	return out, nil
}

// changeOrder sorts the changes on-call cares about first.
func changeOrder(c string) string {
	switch c {
	case ChangeNewlyFailing:
		return "0"
	case ChangeRecovered:
		return "1"
	}
	return "2" + c
}
