package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/batchinput"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

func scheduleCommand() *cli.Command {
	cmds := []*cli.Command{
		scheduleCreateCommand(), scheduleListCommand(), scheduleDescribeCommand(), scheduleUpdateCommand(),
		schedulePauseCommand(), scheduleResumeCommand(), scheduleTriggerCommand(), scheduleDeleteCommand(),
	}
	for _, c := range cmds {
		c.OnUsageError = usageError
	}
	return &cli.Command{
		Name:  "schedule",
		Usage: "run a check on a cadence: schedules stored in etcd, fired by the elected scheduler exactly once per tick",
		Description: "A schedule is a batch (inventory, check, params, policy) and a cadence (--cron or --every).\n" +
			"The elected scheduler creates one batch per tick, named SCHEDULE-<tick in UTC>, in a fenced\n" +
			"transaction: a failover never runs a tick twice. Ticks missed while no scheduler led are\n" +
			"caught up within --catchup-window: only the latest runs, the others are counted missed.\n" +
			"Cron times are UTC unless the expression starts with CRON_TZ=Area/City. DST: " + scheduler.DSTRule + ".",
		Subcommands: cmds,
	}
}

// cadenceFlags say when a schedule's ticks are and what happens to them.
func cadenceFlags(defaults bool) []cli.Flag {
	overlap, catchup, history := "", time.Duration(0), 0
	if defaults {
		overlap, catchup, history = string(queue.OverlapSkip), queue.DefaultCatchupWindow, queue.DefaultHistory
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "cron", Usage: "cron expression: 5 fields (or 6, seconds first), @hourly/@daily/@every 5m; UTC unless it starts with CRON_TZ=Area/City"},
		&cli.DurationFlag{Name: "every", Usage: "a fixed interval instead of --cron (whole seconds, at least 1s); ticks are its multiples since the Unix epoch"},
		&cli.StringFlag{Name: "overlap", Value: overlap, Usage: "a tick while the previous run still runs: skip (record it), buffer-one (run it when that one finishes), cancel-running, allow"},
		&cli.DurationFlag{Name: "catchup-window", Value: catchup, Usage: "ticks missed while no scheduler led: the latest runs if it is at most this late; the others are counted missed (1s to 720h)"},
		&cli.DurationFlag{Name: "jitter", Usage: "start each run up to this long after its tick, at a fixed point per tick"},
		&cli.IntFlag{Name: "history", Value: history, Usage: "finished runs of this schedule to keep in etcd (besides the scheduler's --retention)"},
	}
}

func scheduleName(c *cli.Context) (string, error) {
	if c.Args().Len() != 1 {
		return "", usageErr("schedule %s needs exactly one schedule name: patrol schedule %s NAME", c.Command.Name, c.Command.Name)
	}
	name := c.Args().First()
	if err := queue.ValidateScheduleName(name); err != nil {
		return "", usageErr("%v", strings.TrimPrefix(err.Error(), "queue: "))
	}
	return name, nil
}

// scheduleErr words a queue error for the operator.
func scheduleErr(err error) error {
	if errors.Is(err, queue.ErrBadSchedule) || errors.Is(err, queue.ErrScheduleNotFound) || errors.Is(err, queue.ErrScheduleExists) {
		return usageErr("%s", strings.TrimPrefix(err.Error(), "queue: "))
	}
	return err
}

// scheduleCall is one schedule subcommand's run: its name, the queue,
// a bounded context.
type scheduleCall struct {
	c      *cli.Context
	a      *app
	name   string
	output string
	q      *queue.Queue
	ctx    context.Context
}

// scheduleSub builds `patrol schedule NAME ...`: check checks the
// arguments before etcd is touched; run runs connected.
func scheduleSub(name, usage, args string, formats []string, flags []cli.Flag, check func(*cli.Context) error, run func(scheduleCall) error) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: args,
		Flags: append([]cli.Flag{outputFlag(formats...)}, flags...),
		Action: func(c *cli.Context) error {
			out, err := outputFormat(c, formats...)
			if err != nil {
				return err
			}
			sc := scheduleCall{c: c, a: appOf(c), output: out}
			if args != "" {
				if sc.name, err = scheduleName(c); err != nil {
					return err
				}
			} else if c.Args().Len() > 0 {
				return usageErr("schedule %s takes no arguments, got %q", name, c.Args().First())
			}
			if check != nil {
				if err := check(c); err != nil {
					return err
				}
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			ctx, cancel := context.WithTimeout(c.Context, time.Minute)
			defer cancel()
			sc.q, sc.ctx = q, ctx
			return run(sc)
		},
	}
}

func scheduleCreateCommand() *cli.Command {
	var spec queue.ScheduleSpec
	var hosts []inventory.Host
	flags := append(cadenceFlags(true),
		&cli.BoolFlag{Name: "paused", Usage: "create it paused (resume with `patrol schedule resume NAME`)"},
		&cli.StringFlag{Name: "note", Usage: "with --paused: why, shown by describe"})
	return scheduleSub("create", "create a schedule: everything `patrol submit` takes, and a cadence", "NAME", []string{"table", "json"},
		append(flags, batchFlags()...),
		func(c *cli.Context) error {
			in, err := readBatchInput(c, batchinput.Input{}, true, nil)
			if err != nil {
				return err
			}
			spec = queue.ScheduleSpec{Name: c.Args().First(), Check: in.Check, Params: in.Params, Policy: in.Policy, Priority: in.Priority}
			if err := applyCadenceFlags(c, &spec, true); err != nil {
				return err
			}
			if c.Bool("paused") {
				spec.Paused, spec.PauseNote = true, c.String("note")
			} else if c.IsSet("note") {
				return usageErr("--note goes with --paused (or `patrol schedule pause NAME --note TEXT`)")
			}
			hosts = in.Hosts
			return nil
		},
		func(s scheduleCall) error {
			now := time.Now()
			spec.CreatedAt = now
			if spec.Paused {
				spec.PausedAt = now.UTC()
			}
			stored, err := s.q.CreateSchedule(s.ctx, spec, hosts)
			if err != nil {
				return scheduleErr(err)
			}
			cad, _ := scheduler.ParseCadence(stored.Cron, stored.Every())
			next := cad.Next(now)
			if s.output == "json" {
				return json.NewEncoder(s.a.stdout).Encode(map[string]any{"schedule": stored.Name, "hosts": stored.Hosts, "next_run": next.UTC()})
			}
			fmt.Fprintf(s.a.stdout, "schedule %s created: %s, %d hosts; next run %s\n", stored.Name, scheduler.CadenceText(stored), stored.Hosts, timeText(next, cad.Location()))
			if stored.Paused {
				fmt.Fprintf(s.a.stdout, "paused: no tick runs until `patrol schedule resume %s`\n", stored.Name)
			}
			return nil
		})
}

// applyCadenceFlags sets spec's cadence and tick settings from the flags
// (with create, all of them; with update, those given) and checks them,
// as the web API does (scheduler.Settings).
func applyCadenceFlags(c *cli.Context, spec *queue.ScheduleSpec, create bool) error {
	set := func(n string) bool { return create || c.IsSet(n) }
	var st scheduler.Settings
	if create || c.IsSet("cron") || c.IsSet("every") {
		cron, every := c.String("cron"), c.Duration("every")
		st.Cron, st.Every = &cron, &every
	}
	if set("overlap") {
		o := c.String("overlap")
		st.Overlap = &o
	}
	if set("catchup-window") {
		d := c.Duration("catchup-window")
		st.Catchup = &d
	}
	if set("jitter") {
		d := c.Duration("jitter")
		st.Jitter = &d
	}
	if set("history") {
		h := c.Int("history")
		st.History = &h
	}
	return scheduleErr(st.Apply(spec))
}

// timeText shows t in the schedule's zone, with UTC beside it.
func timeText(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "never (no tick within 8 years)"
	}
	if loc == time.UTC {
		return t.UTC().Format("2006-01-02 15:04:05Z")
	}
	return t.In(loc).Format("2006-01-02 15:04:05 MST") + " (" + t.UTC().Format("15:04:05Z") + ")"
}

func scheduleListCommand() *cli.Command {
	return scheduleSub("list", "list schedules: cadence, check, hosts, paused or not, next and last run", "", []string{"table", "json"}, nil, nil,
		func(s scheduleCall) error {
			recs, bad, err := s.q.Schedules(s.ctx)
			if err != nil {
				return fmt.Errorf("list schedules: %w", err)
			}
			for _, b := range bad {
				s.a.log.Error().Str("key", b.Key()).Err(b.Err).Msg("malformed schedule record; the leader quarantines it")
			}
			rows := []scheduler.ListItem{}
			for _, r := range recs {
				rows = append(rows, scheduler.Item(r))
			}
			if s.output == "json" {
				return json.NewEncoder(s.a.stdout).Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(s.a.stdout, "no schedules: create one with `patrol schedule create NAME -i FILE --check tcp --every 5m`")
				return nil
			}
			tw := tabwriter.NewWriter(s.a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCADENCE\tCHECK\tHOSTS\tSTATE\tNEXT RUN (UTC)\tLAST RUN")
			for _, r := range rows {
				state, next, last := "active", "-", "-"
				if r.Paused {
					state = "paused"
				} else if !r.NextRun.IsZero() {
					next = r.NextRun.UTC().Format("2006-01-02 15:04:05")
				}
				if r.LastRun != "" {
					last = r.LastRun
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, r.Cadence, r.Check, r.Hosts, state, next, last)
			}
			return tw.Flush()
		})
}

func scheduleUpdateCommand() *cli.Command {
	flags := append(cadenceFlags(false), batchFlags()...)
	return scheduleSub("update", "change a schedule: any flag of create; -i replaces the inventory atomically; --cron or --every replaces the cadence",
		"NAME", []string{"table", "json"}, flags,
		func(c *cli.Context) error {
			for _, f := range flags {
				if c.IsSet(f.Names()[0]) {
					return nil
				}
			}
			return usageErr("nothing to change: pass the flags to change, e.g. `patrol schedule update %s --every 10m` or `-i FILE`", c.Args().First())
		},
		func(s scheduleCall) error {
			rec, err := s.q.Schedule(s.ctx, s.name)
			if err != nil {
				return scheduleErr(err)
			}
			base := batchinput.Input{Check: rec.Spec.Check, Params: rec.Spec.Params, Policy: rec.Spec.Policy, Priority: rec.Spec.Priority}
			in, err := readBatchInput(s.c, base, false, func() ([]inventory.Host, error) { return s.q.LoadScheduleHosts(s.ctx, rec.Spec) })
			if err != nil {
				return err
			}
			// Checked once here, before anything is written, and again on
			// the spec as stored when the update lands.
			probe := rec.Spec
			if err := applyCadenceFlags(s.c, &probe, false); err != nil {
				return err
			}
			spec, err := s.q.UpdateSchedule(s.ctx, s.name, in.Hosts, time.Now(), func(sp *queue.ScheduleSpec) error {
				sp.Check, sp.Params, sp.Policy, sp.Priority = in.Check, in.Params, in.Policy, in.Priority
				return applyCadenceFlags(s.c, sp, false)
			})
			if err != nil {
				return scheduleErr(err)
			}
			if s.output == "json" {
				return json.NewEncoder(s.a.stdout).Encode(map[string]any{"schedule": spec.Name, "hosts": spec.Hosts, "updated_at": spec.UpdatedAt})
			}
			fmt.Fprintf(s.a.stdout, "schedule %s updated: %s, %s, %d hosts\n", spec.Name, scheduler.CadenceText(spec), spec.Check, spec.Hosts)
			return nil
		})
}

func schedulePauseCommand() *cli.Command {
	return scheduleSub("pause", "pause a schedule: no tick runs until it is resumed (a trigger still does)", "NAME", []string{"table"},
		[]cli.Flag{&cli.StringFlag{Name: "note", Usage: "why it is paused, shown by describe"}}, nil,
		func(s scheduleCall) error {
			_, err := s.q.PauseSchedule(s.ctx, s.name, s.c.String("note"), time.Now())
			if err != nil {
				return scheduleErr(err)
			}
			fmt.Fprintf(s.a.stdout, "schedule %s paused; no tick runs until `patrol schedule resume %s`\n", s.name, s.name)
			return nil
		})
}

func scheduleResumeCommand() *cli.Command {
	return scheduleSub("resume", "resume a paused schedule from its next tick (ticks while it was paused do not run)", "NAME", []string{"table"}, nil, nil,
		func(s scheduleCall) error {
			was, err := s.q.ResumeSchedule(s.ctx, s.name, time.Now())
			if err != nil {
				return scheduleErr(err)
			}
			if !was {
				fmt.Fprintf(s.a.stdout, "schedule %s was not paused; nothing changed\n", s.name)
				return nil
			}
			fmt.Fprintf(s.a.stdout, "schedule %s resumed; it runs from its next tick\n", s.name)
			return nil
		})
}

func scheduleTriggerCommand() *cli.Command {
	return scheduleSub("trigger", "run a schedule now, outside its cadence (even paused, whatever its overlap policy)", "NAME", []string{"table", "json"},
		[]cli.Flag{
			&cli.BoolFlag{Name: "wait", Usage: "wait for the run to finish; exit 0 if every host passed (warnings too, unless --fail-on warn), 2 if any did not"},
			failOnFlag(),
		},
		func(c *cli.Context) error { _, err := failOnWarn(c); return err },
		func(s scheduleCall) error {
			warnFails, _ := failOnWarn(s.c)
			now := time.Now().UTC()
			if err := s.q.TriggerSchedule(s.ctx, s.name, now); err != nil {
				return scheduleErr(err)
			}
			id := queue.ScheduleBatchID(s.name, now, true)
			if s.output == "json" {
				json.NewEncoder(s.a.stdout).Encode(map[string]any{"schedule": s.name, "batch_id": id})
			} else {
				fmt.Fprintf(s.a.stdout, "schedule %s: run requested as batch %s; the elected scheduler starts it within a second (`patrol status %s`)\n", s.name, id, id)
			}
			if !s.c.Bool("wait") {
				return nil
			}
			if err := waitCreated(s.c.Context, s.q, id); err != nil {
				return err
			}
			sum, err := waitBatch(s.c.Context, s.q, id, s.a.stderr)
			if err != nil {
				return err
			}
			return finishedExit(sum, warnFails)
		})
}

func scheduleDeleteCommand() *cli.Command {
	return scheduleSub("delete", "delete a schedule: no tick runs after; its runs stay until retention, a run in flight finishes", "NAME", []string{"table"}, nil, nil,
		func(s scheduleCall) error {
			if err := s.q.DeleteSchedule(s.ctx, s.name); err != nil {
				return scheduleErr(err)
			}
			fmt.Fprintf(s.a.stdout, "schedule %s deleted; its runs stay (`patrol batches`) until the scheduler's --retention\n", s.name)
			return nil
		})
}

func scheduleDescribeCommand() *cli.Command {
	return scheduleSub("describe", "show a schedule: next 10 runs (DST rule), last 10 runs, hosts newly failing or recovered, pause, missed ticks",
		"NAME", []string{"table", "json"}, nil, nil,
		func(s scheduleCall) error {
			v, err := scheduler.Describe(s.ctx, s.q, s.name, time.Now(), 10)
			if err != nil {
				return scheduleErr(err)
			}
			if s.output == "json" {
				enc := json.NewEncoder(s.a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			printSchedule(s.a.stdout, v)
			return nil
		})
}

func printSchedule(w io.Writer, v scheduler.Description) {
	sp, st, loc := v.Spec, v.State, v.Cadence.Location()
	fmt.Fprintf(w, "schedule:        %s\n", sp.Name)
	fmt.Fprintf(w, "cadence:         %s (zone %s)\n", scheduler.CadenceText(sp), v.Zone)
	if v.DSTRule != "" {
		fmt.Fprintf(w, "DST rule:        %s\n", v.DSTRule)
	}
	params := make([]string, 0, len(sp.Params))
	for _, k := range sortedKeys(sp.Params) {
		params = append(params, k+"="+sp.Params[k])
	}
	fmt.Fprintf(w, "check:           %s %s\n", sp.Check, strings.Join(params, " "))
	fmt.Fprintf(w, "inventory:       %d hosts (zones %s)\n", sp.Hosts, strings.Join(sp.Zones, ", "))
	p := sp.Policy
	fmt.Fprintf(w, "policy:          timeout %s, max attempts %d, parallel %d, max failures %q\n", p.Timeout(), p.MaxAttempts, p.Parallel, p.MaxFailures)
	fmt.Fprintf(w, "overlap:         %s\n", sp.Overlap)
	fmt.Fprintf(w, "catch-up:        window %s: of ticks missed while no scheduler led, the latest runs if at most that late; the others are counted missed\n", sp.CatchupWindow())
	if sp.JitterMS > 0 {
		fmt.Fprintf(w, "jitter:          each run starts up to %s after its tick (fixed per tick)\n", sp.Jitter())
	}
	fmt.Fprintf(w, "history:         the last %d runs are kept\n", sp.History)
	if sp.Paused {
		note := ""
		if sp.PauseNote != "" {
			note = ": " + sp.PauseNote
		}
		fmt.Fprintf(w, "state:           PAUSED since %s%s\n", sp.PausedAt.UTC().Format(time.RFC3339), note)
	} else {
		fmt.Fprintln(w, "state:           active")
	}
	if !v.Trigger.IsZero() {
		fmt.Fprintf(w, "trigger:         a run asked for at %s is pending\n", v.Trigger.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "ticks:           %d fired, %d triggered, %d skipped, %d missed", st.Fired, st.Triggered, st.Skipped, st.Missed)
	if !st.Buffered.IsZero() {
		fmt.Fprintf(w, "; tick %s buffered until %s finishes", st.Buffered.UTC().Format(time.RFC3339), st.LastBatch)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "\nnext 10 runs:")
	if sp.Paused {
		fmt.Fprintln(w, "  (paused: these run only once resumed)")
	}
	for _, t := range v.NextTicks {
		moved := ""
		if t.Moved != "" {
			moved = "  (" + t.Moved + " does not exist that day: moved by the DST rule)"
		}
		fmt.Fprintf(w, "  %s%s\n", timeText(t.At, loc), moved)
	}

	fmt.Fprintln(w, "\nlast runs:")
	if len(v.LastRuns) == 0 {
		fmt.Fprintln(w, "  none yet")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TICK (UTC)\tBATCH\tSTATE\tOK\tFAIL\tERROR\tDURATION")
		for _, r := range v.LastRuns {
			ok, fail, errs, dur := "-", "-", "-", "-"
			if r.Counts != nil {
				ok = fmt.Sprint(r.Counts[queue.StatusOK] + r.Counts[queue.StatusWarn])
				fail = fmt.Sprint(r.Counts[queue.StatusFail])
				errs = fmt.Sprint(r.Counts[queue.StatusError] + r.Counts[queue.StatusDead])
				dur = r.Duration.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Tick.UTC().Format("2006-01-02 15:04:05"), r.Batch, r.State, ok, fail, errs, dur)
		}
		tw.Flush()
	}
	if ch := v.Changes; ch != nil {
		if ch.Previous == "" {
			fmt.Fprintf(w, "\nchanges in %s: no earlier run to compare with\n", ch.Batch)
		} else {
			var failing, recovered []string
			for _, c := range ch.Changes {
				switch c.Change {
				case queue.ChangeNewlyFailing:
					failing = append(failing, c.Host)
				case queue.ChangeRecovered:
					recovered = append(recovered, c.Host)
				}
			}
			fmt.Fprintf(w, "\nchanges in %s since %s:\n", ch.Batch, ch.Previous)
			fmt.Fprintf(w, "  newly failing: %s\n", listOrNone(failing))
			fmt.Fprintf(w, "  recovered:     %s\n", listOrNone(recovered))
		}
	}
	if len(st.Events) > 0 {
		fmt.Fprintln(w, "\nticks not run as scheduled (latest):")
		for _, e := range st.Events {
			n := ""
			if e.Count > 1 {
				n = fmt.Sprintf(" (%d ticks from it)", e.Count)
			}
			fmt.Fprintf(w, "  %s %s%s: %s\n", e.Tick.UTC().Format("2006-01-02 15:04:05Z"), e.What, n, e.Why)
		}
	}
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// waitCreated waits until batch exists (the leader fires a trigger within
// about a second), watching its spec key.
func waitCreated(ctx context.Context, q *queue.Queue, batch string) error {
	key := q.Keys().BatchSpec(batch)
	resp, err := q.Client().Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	if resp.Count > 0 {
		return nil
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range q.Client().Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("wait for batch %s: %w", batch, err)
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	if ctx.Err() != nil {
		return exitErr{code: exitInterrupted, msg: fmt.Sprintf("interrupted; the run %s is still asked for: `patrol status %s`", batch, batch)}
	}
	return fmt.Errorf("wait for batch %s: the watch ended", batch)
}
