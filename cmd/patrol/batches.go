package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func batchesCommand() *cli.Command {
	limitArg := func(c *cli.Context) (string, error) {
		if c.Int("limit") < 0 {
			return "", usageErr("--limit %d: must be 0 (all) or more", c.Int("limit"))
		}
		return "", nil
	}
	return queueCommand("batches", "list recent batches, newest first: state, check, hosts, counts, age", "",
		[]string{"table", "json"}, time.Minute, []cli.Flag{
			&cli.IntFlag{Name: "limit", Value: 20, Usage: "how many batches to list (0: all)"},
			&cli.StringFlag{Name: "schedule", Usage: "only the runs of this schedule (see `patrol schedule list`)"},
		}, limitArg, func(b queueCall) error {
			a, q, ctx, out := b.a, b.q, b.ctx, b.output
			var list []queue.BatchInfo
			var err error
			if name := b.c.String("schedule"); name != "" {
				if _, err := q.Schedule(ctx, name); err != nil {
					return scheduleErr(err)
				}
				list, err = q.ScheduleBatches(ctx, name, b.c.Int("limit"))
			} else {
				list, err = q.Batches(ctx, b.c.Int("limit"))
			}
			if err != nil {
				return fmt.Errorf("list batches: %w", err)
			}
			type row struct {
				ID        string               `json:"batch_id"`
				State     string               `json:"state"`
				Check     string               `json:"check"`
				Hosts     int                  `json:"hosts"`
				Done      int                  `json:"done"`
				Counts    map[queue.Status]int `json:"counts,omitempty"`
				CreatedAt time.Time            `json:"created_at"`
				Priority  int                  `json:"priority"`
			}
			rows := make([]row, 0, len(list))
			for _, b := range list {
				r := row{ID: b.Spec.ID, State: "running", Check: b.Spec.Check, Hosts: b.Spec.Hosts, Done: b.Progress, CreatedAt: b.Spec.CreatedAt,
					Priority: b.Spec.Priority}
				if b.Summary != nil {
					r.State, r.Done, r.Counts = "finished", b.Summary.Total, b.Summary.Counts
				}
				rows = append(rows, r)
			}
			if out == "json" {
				return json.NewEncoder(a.stdout).Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(a.stdout, "no batches: submit one with `patrol submit -i FILE --check tcp`")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BATCH\tSTATE\tCHECK\tPRIORITY\tHOSTS\tDONE\tOK\tWARN\tFAILED\tAGE")
			for _, r := range rows {
				ok, warn, failed := "-", "-", "-"
				if r.Counts != nil {
					ok = fmt.Sprint(r.Counts[queue.StatusOK])
					warn = fmt.Sprint(r.Counts[queue.StatusWarn])
					failed = fmt.Sprint(r.Hosts - r.Counts[queue.StatusOK] - r.Counts[queue.StatusWarn])
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.State, r.Check, queue.PriorityName(r.Priority), r.Hosts, r.Done, ok, warn, failed,
					time.Since(r.CreatedAt).Round(time.Second))
			}
			return tw.Flush()
		})
}
