package web

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/patrol-dev/patrol/internal/batchinput"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

// Schedules (issue 14) in the API and the console: the routes mirror
// `patrol schedule`, and judge and describe a schedule with the same code
// (scheduler.Settings, scheduler.Describe, the queue's calls).

// scheduleRoutes are the routes of schedules, listed in docs/openapi.yaml.
func (s *Server) scheduleRoutes() []route {
	return []route{
		{pattern: "GET /api/v1/schedules", api: true, handle: s.listSchedules},
		{pattern: "POST /api/v1/schedules", api: true, need: RoleOperator, body: s.cfg.MaxBody, timeout: 4 * s.cfg.RequestTimeout, handle: s.createSchedule},
		{pattern: "GET /api/v1/schedules/{schedule}", api: true, handle: s.getSchedule},
		{pattern: "PATCH /api/v1/schedules/{schedule}", api: true, need: RoleOperator, body: s.cfg.MaxBody, timeout: 4 * s.cfg.RequestTimeout, handle: s.updateSchedule},
		{pattern: "DELETE /api/v1/schedules/{schedule}", api: true, need: RoleOperator, handle: s.deleteSchedule},
		{pattern: "POST /api/v1/schedules/{schedule}/pause", api: true, need: RoleOperator, body: smallBody, handle: s.pauseSchedule},
		{pattern: "POST /api/v1/schedules/{schedule}/resume", api: true, need: RoleOperator, body: smallBody, handle: s.resumeSchedule},
		{pattern: "POST /api/v1/schedules/{schedule}/trigger", api: true, need: RoleOperator, body: smallBody, handle: s.triggerSchedule},

		{pattern: "GET /schedules", handle: s.pageSchedules},
		{pattern: "GET /schedules/{schedule}", handle: s.pageSchedule},
	}
}

// scheduleParam is the {schedule} path value, validated.
func scheduleParam(req *request) (string, error) {
	name := req.r.PathValue("schedule")
	if err := queue.ValidateScheduleName(name); err != nil {
		return "", badRequest("schedule name %q: use 1-34 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return name, nil
}

// apiWords rewords the CLI's flags and commands in the queue's and
// scheduler's messages as the API's fields and routes.
var (
	apiWords = strings.NewReplacer("--catchup-window", "catchup_window", "--cron", "cron", "--every", "every",
		"--jitter", "jitter", "--history", "history", "--check", "check", "--overlap", "overlap",
		"`patrol schedule list`", "GET /api/v1/schedules")
	updateCommand = regexp.MustCompile("`patrol schedule update ([A-Za-z0-9._-]+)`")
)

func apiWorded(msg string) string {
	return apiWords.Replace(updateCommand.ReplaceAllString(msg, "PATCH /api/v1/schedules/$1"))
}

// scheduleError answers a schedule's queue or settings error with its status.
func scheduleError(err error) error {
	msg := func() string { return apiWorded(strings.TrimPrefix(err.Error(), "queue: ")) }
	switch {
	case errors.Is(err, queue.ErrScheduleNotFound):
		return &apiError{http.StatusNotFound, msg()}
	case errors.Is(err, queue.ErrScheduleExists):
		return &apiError{http.StatusConflict, msg()}
	case errors.Is(err, queue.ErrBadSchedule):
		return badRequest("%s", msg())
	case errors.Is(err, queue.ErrConflict):
		return &apiError{http.StatusConflict, msg()}
	}
	return err
}

// scheduleRow is one schedule in the list, with its last run's state and
// counts.
type scheduleRow struct {
	scheduler.ListItem
	LastState  string               `json:"last_run_state,omitempty"` // running, finished; "" with no run (or purged)
	LastCounts map[queue.Status]int `json:"last_run_counts,omitempty"`
	LastDone   int                  `json:"last_run_done,omitempty"`
}

// scheduleRows reads every schedule and its last run: one read for the
// schedules, then one or two per schedule.
func (s *Server) scheduleRows(req *request) ([]scheduleRow, error) {
	recs, bad, err := s.q.Schedules(req.ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		s.log.Warn().Str("key", b.Key()).Err(b.Err).Msg("malformed schedule record; the leader quarantines it")
	}
	rows := []scheduleRow{}
	for _, rec := range recs {
		row := scheduleRow{ListItem: scheduler.Item(rec)}
		if id := rec.State.LastBatch; id != "" {
			sum, done, err := s.q.Summary(req.ctx, id)
			switch {
			case err != nil:
				return nil, err
			case done:
				row.LastState, row.LastCounts, row.LastDone = "finished", sum.Counts, queue.Counts(sum.Counts).Done()
			default:
				if ok, err := s.q.Active(req.ctx, id); err != nil {
					return nil, err
				} else if ok {
					pub, _, err := s.q.ResultCounts(req.ctx, id)
					if err != nil {
						return nil, err
					}
					row.LastState, row.LastCounts, row.LastDone = "running", pub.Counts, pub.Counts.Done()
				}
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// listSchedules answers GET /api/v1/schedules.
func (s *Server) listSchedules(req *request) error {
	rows, err := s.scheduleRows(req)
	if err != nil {
		return err
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"schedules": rows})
	return nil
}

// describeSchedule reads {schedule} as `patrol schedule describe` shows it.
func (s *Server) describeSchedule(req *request) (scheduler.Description, error) {
	name, err := scheduleParam(req)
	if err != nil {
		return scheduler.Description{}, err
	}
	d, err := scheduler.Describe(req.ctx, s.q, name, time.Now(), 10)
	if err != nil {
		return d, scheduleError(err)
	}
	return d, nil
}

// getSchedule answers GET /api/v1/schedules/{schedule}.
func (s *Server) getSchedule(req *request) error {
	d, err := s.describeSchedule(req)
	if err != nil {
		return err
	}
	writeJSON(req.w, http.StatusOK, d)
	return nil
}

// cadenceBody is a schedule's cadence and tick settings in a request;
// durations are text such as "5m" (nil: not given).
type cadenceBody struct {
	Cron          *string `json:"cron"`
	Every         *string `json:"every"`
	Overlap       *string `json:"overlap"`
	CatchupWindow *string `json:"catchup_window"`
	Jitter        *string `json:"jitter"`
	History       *int    `json:"history"`
}

func (c cadenceBody) given() bool {
	return c.Cron != nil || c.Every != nil || c.Overlap != nil || c.CatchupWindow != nil || c.Jitter != nil || c.History != nil
}

// settings reads c as scheduler.Settings. Giving cron or every replaces
// the cadence, as --cron and --every do.
func (c cadenceBody) settings() (scheduler.Settings, error) {
	st := scheduler.Settings{Overlap: c.Overlap, History: c.History}
	dur := func(name string, text *string) (*time.Duration, error) {
		if text == nil {
			return nil, nil
		}
		d, err := time.ParseDuration(*text)
		if err != nil {
			return nil, badRequest("%s %q: write a duration like 30s, 5m or 1h", name, *text)
		}
		return &d, nil
	}
	var err error
	if c.Cron != nil || c.Every != nil {
		cron, every := "", time.Duration(0)
		if c.Cron != nil {
			cron = *c.Cron
		}
		if c.Every != nil && *c.Every != "" {
			e, err := dur("every", c.Every)
			if err != nil {
				return st, err
			}
			every = *e
		}
		st.Cron, st.Every = &cron, &every
	}
	if st.Catchup, err = dur("catchup_window", c.CatchupWindow); err != nil {
		return st, err
	}
	if st.Jitter, err = dur("jitter", c.Jitter); err != nil {
		return st, err
	}
	return st, nil
}

// createBody is POST /api/v1/schedules's body: what `patrol schedule
// create` takes.
type createBody struct {
	Name string `json:"name"`
	cadenceBody
	batchPatch
	Paused bool   `json:"paused"`
	Note   string `json:"note"`
}

// createSchedule answers POST /api/v1/schedules. Nothing is written
// unless every setting is valid.
func (s *Server) createSchedule(req *request) error {
	var b createBody
	if err := decodeJSON(req, &b); err != nil {
		return err
	}
	if err := queue.ValidateScheduleName(b.Name); err != nil {
		return scheduleError(fmt.Errorf("%w; give it as \"name\"", err))
	}
	// As create's flags: the tick settings not given take their defaults.
	if b.Overlap == nil {
		b.Overlap = new(string(queue.OverlapSkip))
	}
	if b.CatchupWindow == nil {
		b.CatchupWindow = new(queue.DefaultCatchupWindow.String())
	}
	if b.History == nil {
		b.History = new(queue.DefaultHistory)
	}
	if b.Cron == nil && b.Every == nil {
		b.Cron = new("")
	}
	if b.Note != "" && !b.Paused {
		return badRequest(`"note" goes with "paused": true (or POST /api/v1/schedules/%s/pause with a note)`, b.Name)
	}
	st, err := b.settings()
	if err != nil {
		return err
	}
	in, err := readBatch(batchinput.Input{}, b.batchPatch, true, nil)
	if err != nil {
		return err
	}
	now := time.Now()
	spec := queue.ScheduleSpec{Name: b.Name, Check: in.Check, Params: in.Params, Policy: in.Policy, Priority: in.Priority, CreatedAt: now}
	if err := st.Apply(&spec); err != nil {
		return scheduleError(err)
	}
	if b.Paused {
		spec.Paused, spec.PauseNote, spec.PausedAt = true, b.Note, now.UTC()
	}
	stored, err := s.q.CreateSchedule(req.ctx, spec, in.Hosts)
	if err != nil {
		return scheduleError(err)
	}
	s.log.Info().Str("schedule", stored.Name).Int("hosts", stored.Hosts).Str("token", req.caller.name).Msg("web: schedule create")
	out := map[string]any{"schedule": stored.Name, "hosts": stored.Hosts, "paused": stored.Paused}
	if !stored.Paused {
		out["next_run"] = scheduler.NextRun(stored, queue.ScheduleState{})
	}
	writeJSON(req.w, http.StatusCreated, out)
	return nil
}

// updateBody is PATCH /api/v1/schedules/{schedule}'s body: the settings
// to change, as `patrol schedule update` takes them.
type updateBody struct {
	cadenceBody
	batchPatch
}

// updateSchedule answers PATCH /api/v1/schedules/{schedule}: fields not
// given keep their values; hosts or inventory replace the inventory.
func (s *Server) updateSchedule(req *request) error {
	name, err := scheduleParam(req)
	if err != nil {
		return err
	}
	var b updateBody
	if err := decodeJSON(req, &b); err != nil {
		return err
	}
	if !b.cadenceBody.given() && !b.batchPatch.given() {
		return badRequest(`nothing to change: give the fields to change, e.g. {"every": "10m"} or {"hosts": ["web1", "web2"]}`)
	}
	st, err := b.settings()
	if err != nil {
		return err
	}
	rec, err := s.q.Schedule(req.ctx, name)
	if err != nil {
		return scheduleError(err)
	}
	base := batchinput.Input{Check: rec.Spec.Check, Params: rec.Spec.Params, Policy: rec.Spec.Policy, Priority: rec.Spec.Priority}
	in, err := readBatch(base, b.batchPatch, false, func() ([]inventory.Host, error) { return s.q.LoadScheduleHosts(req.ctx, rec.Spec) })
	if err != nil {
		return err
	}
	// Checked once here, before anything is written, and again on the
	// spec as stored when the update lands.
	probe := rec.Spec
	if err := st.Apply(&probe); err != nil {
		return scheduleError(err)
	}
	spec, err := s.q.UpdateSchedule(req.ctx, name, in.Hosts, time.Now(), func(sp *queue.ScheduleSpec) error {
		sp.Check, sp.Params, sp.Policy, sp.Priority = in.Check, in.Params, in.Policy, in.Priority
		return st.Apply(sp)
	})
	if err != nil {
		return scheduleError(err)
	}
	s.log.Info().Str("schedule", name).Str("token", req.caller.name).Msg("web: schedule update")
	writeJSON(req.w, http.StatusOK, map[string]any{"schedule": spec.Name, "hosts": spec.Hosts, "updated_at": spec.UpdatedAt,
		"message": fmt.Sprintf("schedule %s updated: %s, %s, %d hosts", spec.Name, scheduler.CadenceText(spec), spec.Check, spec.Hosts)})
	return nil
}

// deleteSchedule answers DELETE /api/v1/schedules/{schedule}.
func (s *Server) deleteSchedule(req *request) error {
	name, err := scheduleParam(req)
	if err != nil {
		return err
	}
	if err := s.q.DeleteSchedule(req.ctx, name); err != nil {
		return scheduleError(err)
	}
	s.log.Info().Str("schedule", name).Str("token", req.caller.name).Msg("web: schedule delete")
	writeJSON(req.w, http.StatusOK, map[string]any{"schedule": name, "deleted": true,
		"message": fmt.Sprintf("schedule %s deleted; its runs stay until the scheduler's --retention", name)})
	return nil
}

// pauseBody is POST .../pause's body.
type pauseBody struct {
	Note string `json:"note"`
}

// pauseSchedule answers POST /api/v1/schedules/{schedule}/pause.
func (s *Server) pauseSchedule(req *request) error {
	name, err := scheduleParam(req)
	if err != nil {
		return err
	}
	var b pauseBody
	if req.r.ContentLength != 0 {
		if err := decodeJSON(req, &b); err != nil {
			return err
		}
	}
	if _, err := s.q.PauseSchedule(req.ctx, name, b.Note, time.Now()); err != nil {
		return scheduleError(err)
	}
	s.log.Info().Str("schedule", name).Str("token", req.caller.name).Msg("web: schedule pause")
	writeJSON(req.w, http.StatusOK, map[string]any{"schedule": name, "paused": true,
		"message": fmt.Sprintf("schedule %s paused; no tick runs until it is resumed", name)})
	return nil
}

// resumeSchedule answers POST /api/v1/schedules/{schedule}/resume.
func (s *Server) resumeSchedule(req *request) error {
	name, err := scheduleParam(req)
	if err != nil {
		return err
	}
	if err := emptyOrObject(req); err != nil {
		return err
	}
	was, err := s.q.ResumeSchedule(req.ctx, name, time.Now())
	if err != nil {
		return scheduleError(err)
	}
	s.log.Info().Str("schedule", name).Str("token", req.caller.name).Bool("was_paused", was).Msg("web: schedule resume")
	msg := fmt.Sprintf("schedule %s resumed; it runs from its next tick", name)
	if !was {
		msg = fmt.Sprintf("schedule %s was not paused; nothing changed", name)
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"schedule": name, "resumed": was, "message": msg})
	return nil
}

// triggerSchedule answers POST /api/v1/schedules/{schedule}/trigger: a
// run now, outside the cadence.
func (s *Server) triggerSchedule(req *request) error {
	name, err := scheduleParam(req)
	if err != nil {
		return err
	}
	if err := emptyOrObject(req); err != nil {
		return err
	}
	now := time.Now().UTC()
	if err := s.q.TriggerSchedule(req.ctx, name, now); err != nil {
		return scheduleError(err)
	}
	id := queue.ScheduleBatchID(name, now, true)
	s.log.Info().Str("schedule", name).Str("batch", id).Str("token", req.caller.name).Msg("web: schedule trigger")
	writeJSON(req.w, http.StatusAccepted, map[string]any{"schedule": name, "batch_id": id,
		"message": fmt.Sprintf("run requested as batch %s; the elected scheduler starts it within a second", id)})
	return nil
}

// pageSchedules is the console's schedule list.
func (s *Server) pageSchedules(req *request) error {
	rows, err := s.scheduleRows(req)
	if err != nil {
		return err
	}
	return s.render(req, "schedules", "Schedules", rows)
}

// schedulePage is the schedule page's data.
type schedulePage struct {
	scheduler.Description
	Failing, Recovered []string
}

// pageSchedule is one schedule, as describe shows it, with its buttons.
func (s *Server) pageSchedule(req *request) error {
	d, err := s.describeSchedule(req)
	if err != nil {
		return err
	}
	p := schedulePage{Description: d}
	if d.Changes != nil {
		for _, c := range d.Changes.Changes {
			switch c.Change {
			case queue.ChangeNewlyFailing:
				p.Failing = append(p.Failing, c.Host)
			case queue.ChangeRecovered:
				p.Recovered = append(p.Recovered, c.Host)
			}
		}
	}
	return s.render(req, "schedule", "Schedule "+d.Spec.Name, p)
}
