package web

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// batchItem is one row of the batch list.
type batchItem struct {
	ID         string               `json:"batch_id"`
	State      string               `json:"state"`
	Check      string               `json:"check"`
	Hosts      int                  `json:"hosts"`
	Done       int                  `json:"done"`
	Counts     map[queue.Status]int `json:"counts,omitempty"` // a finished batch's summary
	CreatedAt  time.Time            `json:"created_at"`
	FinishedAt *time.Time           `json:"finished_at,omitempty"`
}

type batchList struct {
	Batches []batchItem `json:"batches"`
	// Next is the cursor of the next page (?after=), "" on the last.
	Next string `json:"next,omitempty"`
}

// listBatches answers GET /api/v1/batches.
func (s *Server) listBatches(req *request) error {
	list, err := s.batchList(req)
	if err != nil {
		return err
	}
	writeJSON(req.w, http.StatusOK, list)
	return nil
}

// batchList reads a page of the batch list: newest first, filtered by
// state, check and ID substring, past the batch named by after. It reads
// the index keys, then specs (cached), then only the page's counts.
func (s *Server) batchList(req *request) (batchList, error) {
	qv := req.r.URL.Query()
	state := qv.Get("state")
	if state != "" && state != "running" && state != "finished" {
		return batchList{}, badRequest("state=%q: use running or finished", state)
	}
	limit, err := intParam(req, "limit", 50, 1, 500)
	if err != nil {
		return batchList{}, err
	}
	check, search, after := qv.Get("check"), qv.Get("q"), qv.Get("after")
	if after != "" {
		if err := queue.ValidateBatchID(after); err != nil {
			return batchList{}, badRequest("after=%q: pass the next value of the previous page", after)
		}
	}
	active, finished, err := s.q.BatchIDs(req.ctx)
	if err != nil {
		return batchList{}, err
	}
	isActive := map[string]bool{}
	for _, id := range active {
		isActive[id] = true
	}
	ids := append(slices.Clone(active), finished...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	specs := s.loadSpecs(req.ctx, ids)
	var all []queue.BatchSpec
	for _, id := range ids {
		spec, ok := specs[id]
		if !ok {
			continue // purged meanwhile, not committed yet, or unreadable
		}
		if (state == "running" && !isActive[id]) || (state == "finished" && isActive[id]) ||
			(check != "" && spec.Check != check) || (search != "" && !strings.Contains(id, search)) {
			continue
		}
		all = append(all, spec)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.After(all[j].CreatedAt)
		}
		return all[i].ID > all[j].ID
	})
	if after != "" {
		i := slices.IndexFunc(all, func(sp queue.BatchSpec) bool { return sp.ID == after })
		if i < 0 {
			return batchList{}, badRequest("after=%q: no such batch in this listing (deleted meanwhile?); start again without after", after)
		}
		all = all[i+1:]
	}
	out := batchList{Batches: []batchItem{}}
	if len(all) > limit {
		out.Next = all[limit-1].ID
		all = all[:limit]
	}
	for _, spec := range all {
		it := batchItem{ID: spec.ID, State: "running", Check: spec.Check, Hosts: spec.Hosts, CreatedAt: spec.CreatedAt}
		sum, done, err := s.q.Summary(req.ctx, spec.ID)
		if err != nil {
			return batchList{}, err
		}
		if done {
			fin := sum.FinishedAt
			it.State, it.Done, it.Counts, it.FinishedAt = "finished", sum.Total, sum.Counts, &fin
		} else if it.Done, err = s.resultCount(req.ctx, spec); err != nil {
			return batchList{}, err
		}
		out.Batches = append(out.Batches, it)
	}
	return out, nil
}

// resultCount is how many of a running batch's hosts have a result, as
// the leader last published them (one key, whatever the batch's size; 0
// until it has published); live progress (events) then has them exact.
func (s *Server) resultCount(ctx context.Context, spec queue.BatchSpec) (int, error) {
	pub, _, err := s.q.ResultCounts(ctx, spec.ID)
	return pub.Counts.Done(), err
}

// loadSpecs reads the specs of ids (cached ones from memory), a few at a
// time; the batches it cannot read are left out.
func (s *Server) loadSpecs(ctx context.Context, ids []string) map[string]queue.BatchSpec {
	out := make(map[string]queue.BatchSpec, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, id := range ids {
		if v, ok := s.specs.Load(id); ok {
			out[id] = v.(queue.BatchSpec)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			spec, err := s.loadSpec(ctx, id)
			if err == nil {
				mu.Lock()
				out[id] = spec
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// batchSpec reads the {batch} of the request's path.
func (s *Server) batchSpec(req *request) (queue.BatchSpec, error) {
	id, err := batchParam(req)
	if err != nil {
		return queue.BatchSpec{}, err
	}
	spec, err := s.loadSpec(req.ctx, id)
	if err != nil && isGone(err) {
		s.forgetSpec(id)
	}
	return spec, err
}

// getBatch answers GET /api/v1/batches/{batch}.
func (s *Server) getBatch(req *request) error {
	spec, err := s.batchSpec(req)
	if err != nil {
		return err
	}
	v, err := s.view(req.ctx, spec, 3*time.Second)
	if err != nil {
		return err
	}
	writeJSON(req.w, http.StatusOK, v)
	return nil
}

// resultsPage is a page of a batch's hosts.
type resultsPage struct {
	Rows []hostRow `json:"rows"`
	// Next is the cursor of the next page (?after=), "" on the last.
	Next string `json:"next,omitempty"`
	// Source says how the page was read: "range" (the batch's results in
	// key order from the cursor), "index" (the follower's list of the
	// tasks matching the filter, then their results), "running" or
	// "retrying".
	Source string `json:"source"`
}

// resultsQuery is a results request's parameters.
type resultsQuery struct {
	want   map[queue.Status]bool // nil: every final status
	live   queue.Status          // running or retrying: those, not results
	zone   string
	prefix string
	after  string
	limit  int
}

func parseResultsQuery(req *request) (resultsQuery, error) {
	qv := req.r.URL.Query()
	rq := resultsQuery{zone: qv.Get("zone"), prefix: qv.Get("q"), after: qv.Get("after")}
	var err error
	if rq.limit, err = intParam(req, "limit", 100, 1, 1000); err != nil {
		return rq, err
	}
	if rq.zone != "" {
		if err := queue.ValidateZone(rq.zone); err != nil {
			return rq, badRequest("zone=%q: %v", rq.zone, err)
		}
	}
	if st := qv.Get("status"); st != "" {
		rq.want = map[queue.Status]bool{}
		for _, f := range strings.Split(st, ",") {
			s := queue.Status(strings.TrimSpace(f))
			switch {
			case s == queue.StatusPending:
				return rq, badRequest("status=pending: pending hosts are counted (GET /api/v1/batches/{batch}), not listed; look one up with GET /api/v1/batches/{batch}/hosts/{host}")
			case s == queue.StatusRunning || s == queue.StatusRetrying:
				rq.live = s
			case s.Final():
				rq.want[s] = true
			default:
				return rq, badRequest("status=%q: use some of ok, warn, fail, error, dead, cancelled, skipped, or one of running, retrying", s)
			}
		}
		if rq.live != "" && (len(rq.want) > 0 || strings.Count(st, ",") > 0) {
			return rq, badRequest("status=%q: ask for running or retrying on its own, or for final statuses (ok, warn, fail, error, dead, cancelled, skipped)", st)
		}
	}
	return rq, nil
}

// getResults answers GET /api/v1/batches/{batch}/results.
func (s *Server) getResults(req *request) error {
	spec, err := s.batchSpec(req)
	if err != nil {
		return err
	}
	rq, err := parseResultsQuery(req)
	if err != nil {
		return err
	}
	page, err := s.results(req.ctx, spec, rq)
	if err != nil {
		return err
	}
	writeJSON(req.w, http.StatusOK, page)
	return nil
}

// results reads one page of a batch's hosts.
func (s *Server) results(ctx context.Context, spec queue.BatchSpec, rq resultsQuery) (resultsPage, error) {
	page := resultsPage{Rows: []hostRow{}}
	if rq.zone != "" && !slices.Contains(spec.Zones, rq.zone) {
		return page, nil // no host of the batch is in that zone
	}
	multiZone := len(spec.Zones) > 1
	keep := func(task, zone string) bool {
		return (rq.prefix == "" || strings.HasPrefix(task, queue.TaskID(rq.prefix))) && (rq.zone == "" || !multiZone || zone == rq.zone)
	}
	switch rq.live {
	case queue.StatusRunning:
		page.Source = "running"
		running, err := s.hub.runningByBatch(ctx)
		if err != nil {
			return page, err
		}
		for _, rt := range running[spec.ID] {
			if rt.Task.ID <= rq.after || !keep(rt.Task.ID, rt.Task.Zone) {
				continue
			}
			if len(page.Rows) == rq.limit {
				page.Next = page.Rows[len(page.Rows)-1].Task
				break
			}
			r := queue.RunningRow(rt)
			page.Rows = append(page.Rows, hostRow{r.Row, r.Zone})
		}
		return page, nil
	case queue.StatusRetrying:
		page.Source = "retrying"
		rows, next, err := s.q.Retrying(ctx, spec.ID, rq.after, rq.limit)
		if err != nil {
			return page, err
		}
		for _, r := range rows {
			if keep(r.Row.Task, r.Zone) {
				page.Rows = append(page.Rows, hostRow{r.Row, r.Zone})
			}
		}
		page.Next = next
		return page, nil
	}

	zoneFilter := rq.zone != "" && multiZone
	if rq.want == nil && !zoneFilter && spec.Hosts < bigBatch {
		return s.rangePage(ctx, spec, rq, nil)
	}
	f, release, err := s.hub.acquire(ctx, spec)
	if err != nil {
		return page, err
	}
	defer release()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	listed := f.waitListed(wctx)
	cancel()
	if rq.want == nil && !zoneFilter {
		return s.rangePage(ctx, spec, rq, f)
	}
	t := f.tally()
	matches := 0
	for st, n := range t.counts {
		if rq.want == nil || rq.want[st] {
			matches += n
		}
	}
	if !listed || (!zoneFilter && matches*5 >= t.results) {
		// Dense enough that a range finds a page quickly (or no index yet).
		return s.rangePage(ctx, spec, rq, f)
	}
	page.Source = "index"
	tasks := f.matching(rq.want, rq.zone)
	i, _ := slices.BinarySearch(tasks, rq.after)
	if i < len(tasks) && tasks[i] == rq.after {
		i++
	}
	var pick []string
	for ; i < len(tasks) && len(pick) < rq.limit; i++ {
		if rq.prefix == "" || strings.HasPrefix(tasks[i], queue.TaskID(rq.prefix)) {
			pick = append(pick, tasks[i])
		}
	}
	if i < len(tasks) && len(pick) == rq.limit {
		page.Next = pick[len(pick)-1]
	}
	rows, _, err := s.q.ResultsOf(ctx, spec.ID, pick)
	if err != nil {
		return page, err
	}
	for _, r := range rows {
		if rq.want == nil || rq.want[r.Status] { // the index may be a second old
			page.Rows = append(page.Rows, hostRow{r, f.zoneOfTask(r.Task)})
		}
	}
	return page, nil
}

// bigBatch is the size from which an unfiltered results page is bounded
// by the follower's list of tasks (see queue.PageQuery.Until): below it, a
// range to the end of the batch costs less than following the batch.
var bigBatch = 20000

// rangePage reads a page as a range over the batch's results from the
// cursor. With f (listed), the range ends where the page must: at the
// task limit (or the scan budget) places past the cursor. With a zone
// filter it needs f's zones.
func (s *Server) rangePage(ctx context.Context, spec queue.BatchSpec, rq resultsQuery, f *follower) (resultsPage, error) {
	page := resultsPage{Rows: []hostRow{}, Source: "range"}
	pq := queue.PageQuery{After: rq.after, Prefix: rq.prefix, Limit: rq.limit, Want: rq.want, MaxScan: 20 * rq.limit}
	if f != nil && rq.prefix == "" && f.tally().listed {
		all := f.allTasks()
		i, _ := slices.BinarySearch(all, rq.after)
		if i < len(all) && all[i] == rq.after {
			i++
		}
		window := rq.limit
		if rq.want != nil {
			window = pq.MaxScan
		}
		if i+window < len(all) {
			pq.Until = all[i+window-1]
		}
	}
	rp, err := s.q.ResultsPage(ctx, spec.ID, pq)
	if err != nil {
		return page, err
	}
	for _, b := range rp.Bad {
		s.log.Warn().Str("key", b.Key()).Err(b.Err).Msg("web: malformed result; shown as an error row")
	}
	for _, r := range rp.Rows {
		zone := ""
		if f != nil {
			zone = f.zoneOfTask(r.Task)
		} else if len(spec.Zones) == 1 {
			zone = spec.Zones[0]
		}
		if rq.zone != "" && len(spec.Zones) > 1 && zone != rq.zone {
			continue
		}
		page.Rows = append(page.Rows, hostRow{r, zone})
	}
	page.Next = rp.Next
	return page, nil
}

// getHost answers GET /api/v1/batches/{batch}/hosts/{host}.
func (s *Server) getHost(req *request) error {
	spec, err := s.batchSpec(req)
	if err != nil {
		return err
	}
	host := req.r.PathValue("host")
	if host == "" || len(host) > 1024 {
		return badRequest("host %q: give the host's name as the inventory wrote it", host)
	}
	row, err := s.q.HostStatus(req.ctx, spec, host)
	if err != nil {
		return err
	}
	zone := ""
	if len(spec.Zones) == 1 {
		zone = spec.Zones[0]
	}
	writeJSON(req.w, http.StatusOK, hostRow{row, zone})
	return nil
}

// cancel answers POST /api/v1/batches/{batch}/cancel.
func (s *Server) cancel(req *request) error {
	id, err := batchParam(req)
	if err != nil {
		return err
	}
	if err := emptyOrObject(req); err != nil {
		return err
	}
	cancelled, err := s.q.Cancel(req.ctx, id)
	if queue.IsNoSpace(err) {
		// etcd takes deletes only: stop the batch by removing its queued tasks.
		removed, rerr := s.q.RemoveQueued(req.ctx, id)
		if rerr != nil {
			return rerr
		}
		writeJSON(req.w, http.StatusOK, map[string]any{"batch_id": id, "cancelled": false, "queued_tasks_removed": removed, "etcd_out_of_space": true,
			"message": fmt.Sprintf("etcd is out of space: the cancel could not be recorded, so batch %s's %d queued tasks were removed instead; once etcd takes writes again, cancel again", id, removed)})
		return nil
	}
	if err != nil {
		return err
	}
	s.log.Info().Str("batch", id).Str("token", req.caller.name).Bool("cancelled", cancelled).Msg("web: cancel")
	msg := "cancel requested: pending hosts end cancelled, running checks are aborted"
	if !cancelled {
		msg = "the batch had already finished; nothing to cancel"
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"batch_id": id, "cancelled": cancelled, "message": msg})
	return nil
}

// emptyOrObject accepts an empty body or {}.
func emptyOrObject(req *request) error {
	if req.r.ContentLength == 0 {
		return nil
	}
	var v struct{}
	return decodeJSON(req, &v)
}

// retryBody is POST /api/v1/batches/{batch}/retry's body.
type retryBody struct {
	Failed    bool `json:"failed"`
	Cancelled bool `json:"cancelled"`
}

// retry answers POST /api/v1/batches/{batch}/retry.
func (s *Server) retry(req *request) error {
	id, err := batchParam(req)
	if err != nil {
		return err
	}
	var b retryBody
	if err := decodeJSON(req, &b); err != nil {
		return err
	}
	if !b.Failed && !b.Cancelled {
		return badRequest(`say which hosts to retry: {"failed": true} (fail, error, dead) and/or {"cancelled": true} (cancelled, skipped)`)
	}
	round, err := s.q.RequestRetry(req.ctx, id, queue.RetryStatuses(b.Failed, b.Cancelled))
	if err != nil {
		if isNotFinished(err) {
			return &apiError{http.StatusConflict, fmt.Sprintf("batch %s is still running: wait for it to finish, or cancel it first", id)}
		}
		return err
	}
	s.log.Info().Str("batch", id).Str("token", req.caller.name).Int("round", round).Msg("web: retry")
	writeJSON(req.w, http.StatusOK, map[string]any{"batch_id": id, "round": round, "message": fmt.Sprintf("round %d queued", round)})
	return nil
}
