package web

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// batchView is one batch with its counts: the API's batch summary, the
// console's batch page header, and (without spec details) a live-progress
// event.
type batchView struct {
	ID         string                          `json:"batch_id"`
	State      string                          `json:"state"` // running, finished
	Check      string                          `json:"check"`
	Params     map[string]string               `json:"params,omitempty"`
	Policy     *queue.Policy                   `json:"policy,omitempty"`
	Hosts      int                             `json:"hosts"`
	Zones      []string                        `json:"zones,omitempty"`
	CreatedAt  time.Time                       `json:"created_at"`
	FinishedAt *time.Time                      `json:"finished_at,omitempty"`
	Done       int                             `json:"done"`
	Counts     map[queue.Status]int            `json:"counts"`
	ZoneCounts map[string]map[queue.Status]int `json:"zone_counts,omitempty"`
	// Exact is false while the server is still listing the batch's
	// results (the counts grow to the truth within seconds).
	Exact           bool `json:"exact"`
	CancelRequested bool `json:"cancel_requested,omitempty"`
}

// fullCounts gives every status a count, so clients need not guess.
func fullCounts(c map[queue.Status]int) map[queue.Status]int {
	out := make(map[queue.Status]int, len(queue.Statuses()))
	for _, st := range queue.Statuses() {
		out[st] = c[st]
	}
	return out
}

// view reads one batch's view. A finished batch with one zone is read
// from its summary alone; otherwise from the batch's follower (started
// if none runs), waiting up to wait for its first listing.
func (s *Server) view(ctx context.Context, spec queue.BatchSpec, wait time.Duration) (batchView, error) {
	v := batchView{ID: spec.ID, State: "running", Check: spec.Check, Params: spec.Params, Policy: &spec.Policy, Hosts: spec.Hosts,
		Zones: spec.Zones, CreatedAt: spec.CreatedAt}
	sum, done, err := s.q.Summary(ctx, spec.ID)
	if err != nil {
		return v, err
	}
	if done && len(spec.Zones) <= 1 {
		v.fromSummary(sum, spec)
		return v, nil
	}
	f, release, err := s.hub.acquire(ctx, spec)
	if err != nil {
		return v, err
	}
	defer release()
	wctx, cancel := context.WithTimeout(ctx, wait)
	f.waitListed(wctx)
	cancel()
	if done {
		v.fromSummary(sum, spec)
		if t := f.tally(); t.listed && t.zoneCounts != nil {
			v.ZoneCounts = t.zoneCounts
		}
		return v, nil
	}
	p, err := s.progress(ctx, f)
	if err != nil {
		return v, err
	}
	v.State, v.Done, v.Counts, v.ZoneCounts, v.Exact, v.FinishedAt = p.State, p.Done, p.Counts, p.ZoneCounts, p.Exact, p.FinishedAt
	if v.State == "running" {
		if v.CancelRequested, err = s.q.CancelRequested(ctx, spec.ID); err != nil {
			return v, err
		}
	}
	return v, nil
}

func (v *batchView) fromSummary(sum queue.Summary, spec queue.BatchSpec) {
	v.State, v.Done, v.Counts, v.Exact = "finished", sum.Total, fullCounts(sum.Counts), true
	fin := sum.FinishedAt
	v.FinishedAt = &fin
	if len(spec.Zones) == 1 {
		v.ZoneCounts = map[string]map[queue.Status]int{spec.Zones[0]: sum.Counts}
	}
}

// progressEvent is a live-progress event: one batch's counts.
type progressEvent struct {
	ID         string                          `json:"batch_id"`
	State      string                          `json:"state"`
	Hosts      int                             `json:"hosts"`
	Done       int                             `json:"done"`
	Counts     map[queue.Status]int            `json:"counts"`
	ZoneCounts map[string]map[queue.Status]int `json:"zone_counts,omitempty"`
	Exact      bool                            `json:"exact"`
	FinishedAt *time.Time                      `json:"finished_at,omitempty"`
}

// progress is a batch's counts from its follower's memory and the
// sampled running and retrying counts: no read of the batch's results.
func (s *Server) progress(ctx context.Context, f *follower) (progressEvent, error) {
	t := f.tally()
	p := progressEvent{ID: f.spec.ID, State: "running", Hosts: f.spec.Hosts, Done: t.results, Exact: t.listed, ZoneCounts: t.zoneCounts}
	counts := t.counts
	if t.listed {
		sum, err := f.finished(ctx, t.results)
		if err != nil {
			return p, err
		}
		if sum != nil {
			p.State = "finished"
			fin := sum.FinishedAt
			p.FinishedAt = &fin
		}
	}
	if p.State == "running" {
		running, err := s.hub.runningByBatch(ctx)
		if err != nil {
			return p, err
		}
		retrying, err := f.retryingCount(ctx)
		if err != nil {
			return p, err
		}
		// The running sample may be a second older than the results:
		// a task whose result is in is not running any more.
		counts[queue.StatusRunning] = f.unfinished(running[f.spec.ID])
		counts[queue.StatusRetrying] = retrying
		counts[queue.StatusPending] = max(0, f.spec.Hosts-t.results-counts[queue.StatusRunning]-retrying)
		if t.zoneCounts == nil && len(f.spec.Zones) == 1 {
			p.ZoneCounts = map[string]map[queue.Status]int{f.spec.Zones[0]: counts}
		}
	}
	p.Counts = fullCounts(counts)
	return p, nil
}

// loadSpec reads a batch's spec, caching it: specs never change (a batch
// deleted and submitted again under its ID is noticed by its nonce when
// its follower starts).
func (s *Server) loadSpec(ctx context.Context, id string) (queue.BatchSpec, error) {
	if v, ok := s.specs.Load(id); ok {
		return v.(queue.BatchSpec), nil
	}
	spec, err := s.q.LoadBatch(ctx, id)
	if err != nil {
		return spec, err
	}
	s.specs.Store(id, spec)
	return spec, nil
}

// forgetSpec drops a cached spec (its batch is gone).
func (s *Server) forgetSpec(id string) { s.specs.Delete(id) }

// isGone reports whether err says the batch no longer exists.
func isGone(err error) bool { return errors.Is(err, queue.ErrBatchNotFound) }

// hostRow is a results row as the API returns it: the result's fields,
// the task ID and the host's zone when known.
type hostRow struct {
	queue.HostResult
	Zone string
}

func (r hostRow) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(r.HostResult)
	if err != nil || r.Zone == "" {
		return b, err
	}
	z, _ := json.Marshal(r.Zone)
	out := append(b[:len(b)-1:len(b)-1], `,"zone":`...)
	out = append(out, z...)
	return append(out, '}'), nil
}

func isNotFinished(err error) bool { return errors.Is(err, queue.ErrNotFinished) }
