package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/patrol-dev/patrol/queue"
)

// streamAbove is the batch size above which `patrol results` streams:
// it pages through the committed results instead of loading the
// inventory, and lists no pending hosts.
const streamAbove = 20000

func resultsCommand() *cli.Command {
	return batchCommand("results", "show one row per host of a batch: status, attempts, duration, worker, message",
		[]string{"table", "wide", "json", "yaml", "csv"}, 30*time.Minute, []cli.Flag{
			&cli.StringFlag{Name: "status", Usage: "only hosts in these statuses, comma separated (e.g. warn or fail,error,dead)"},
			&cli.BoolFlag{Name: "stats", Usage: "summarise each numeric detail across the hosts (count, min, p50, p95, max, the worst hosts) instead of listing them"},
			&cli.IntFlag{Name: "limit", Usage: "at most this many rows (1 or more), then the command to print the next page; without it, all"},
			&cli.StringFlag{Name: "after", Usage: "start after this host (the last one of the page before)"},
			&cli.BoolFlag{Name: "changes", Usage: "for a schedule's run: only hosts whose status differs from the schedule's previous run, with how many runs each has been failing"},
		}, func(b queueCall) error {
			if b.c.Bool("changes") {
				return printChanges(b)
			}
			want, err := parseStatuses(b.c.String("status"))
			if err != nil {
				return err
			}
			limit := b.c.Int("limit")
			if b.c.IsSet("limit") && limit < 1 {
				return usageErr("--limit %d: give a number of rows, 1 or more (leave --limit out for all of them)", limit)
			}
			spec, err := b.q.LoadBatch(b.ctx, b.batch)
			if err != nil {
				return notFound(b.batch, err)
			}
			stream := limit > 0 || b.c.String("after") != "" || spec.Hosts > streamAbove
			if stream && !b.c.Bool("stats") {
				if want[queue.StatusPending] {
					return usageErr("--status pending: pending hosts are listed only for a batch of at most %d hosts, without --limit or --after; `patrol status %s` counts them", streamAbove, b.batch)
				}
				return streamResults(b, spec, want, limit)
			}
			rows, bad, err := b.q.Results(b.ctx, b.batch)
			if err != nil {
				return notFound(b.batch, err)
			}
			for _, v := range bad {
				b.a.log.Error().Str("key", v.Key()).Err(v.Err).Msg("malformed value; shown as an error row")
			}
			if len(want) > 0 {
				kept := rows[:0]
				for _, r := range rows {
					if want[r.Status] {
						kept = append(kept, r)
					}
				}
				rows = kept
			}
			var view any
			if b.c.Bool("stats") {
				stats := resultStats(rows)
				view = stats
				switch b.output {
				case "table", "wide":
					printStats(b.a.stdout, stats)
					return nil
				case "csv":
					return writeStatsCSV(b.a.stdout, stats)
				}
			}
			if b.c.Bool("stats") {
				switch b.output {
				case "json":
					enc := json.NewEncoder(b.a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(view)
				case "yaml":
					j, err := json.Marshal(view)
					if err != nil {
						return err
					}
					y, err := yaml.JSONToYAML(j)
					if err != nil {
						return err
					}
					_, err = b.a.stdout.Write(y)
					return err
				}
			}
			w := newRowWriter(b.output, b.a.stdout)
			for _, r := range rows {
				if err := w.write(r); err != nil {
					return err
				}
			}
			return w.close()
		})
}

// parseStatuses reads --status.
func parseStatuses(s string) (map[queue.Status]bool, error) {
	if s == "" {
		return nil, nil
	}
	known := queue.Statuses()
	out := map[queue.Status]bool{}
	for _, f := range strings.Split(s, ",") {
		st := queue.Status(strings.TrimSpace(f))
		if !slices.Contains(known, st) {
			names := make([]string, len(known))
			for i, k := range known {
				names[i] = string(k)
			}
			return nil, usageErr("--status %q: unknown status; use some of %s", st, strings.Join(names, ", "))
		}
		out[st] = true
	}
	return out, nil
}

func writeStatsCSV(w io.Writer, stats []detailStats) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"detail", "hosts", "min", "p50", "p95", "max", "low_is_worse", "worst"})
	for _, s := range stats {
		var worst []string
		for _, hv := range s.Worst {
			worst = append(worst, hv.Host+"="+num(hv.Value))
		}
		cw.Write([]string{s.Detail, strconv.Itoa(s.Count), num(s.Min), num(s.P50), num(s.P95), num(s.Max),
			strconv.FormatBool(s.LowIsWorse), strings.Join(worst, " ")})
	}
	cw.Flush()
	return cw.Error()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func batchArg(c *cli.Context) (string, error) {
	if c.Args().Len() != 1 {
		return "", usageErr("%s needs exactly one batch ID: patrol %s BATCH (the ID `patrol submit` printed)", c.Command.Name, c.Command.Name)
	}
	id := c.Args().First()
	if err := queue.ValidateBatchID(id); err != nil {
		return "", usageErr("%v", err)
	}
	return id, nil
}

func notFound(batch string, err error) error {
	if errors.Is(err, queue.ErrBatchNotFound) {
		return fmt.Errorf("no batch %s under this --prefix: check the ID and --endpoints/--prefix", batch)
	}
	return fmt.Errorf("read batch %s: %w", batch, err)
}

// printChanges shows what changed in a schedule's run since the run before.
func printChanges(b queueCall) error {
	if b.c.IsSet("status") || b.c.Bool("stats") {
		return usageErr("--changes lists the hosts that changed; it takes neither --status nor --stats")
	}
	ch, err := b.q.Changes(b.ctx, b.batch)
	if errors.Is(err, queue.ErrNotScheduled) {
		return usageErr("%s", strings.TrimPrefix(err.Error(), "queue: "))
	}
	if err != nil {
		return notFound(b.batch, err)
	}
	switch b.output {
	case "json":
		enc := json.NewEncoder(b.a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ch)
	case "table", "wide":
	default:
		return usageErr("--changes prints table or json, not %s", b.output)
	}
	if ch.Previous == "" {
		fmt.Fprintf(b.a.stdout, "%s is the first run of schedule %s still kept: nothing to compare with\n", ch.Batch, ch.Schedule)
		return nil
	}
	if len(ch.Changes) == 0 {
		fmt.Fprintf(b.a.stdout, "no host changed status since %s\n", ch.Previous)
		return nil
	}
	tw := tabwriter.NewWriter(b.a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "HOST\tCHANGE\tBEFORE (%s)\tNOW\tFAILING SINCE\n", ch.Previous)
	for _, c := range ch.Changes {
		since := "-"
		if c.FailingRuns > 0 {
			since = fmt.Sprintf("%s (%d runs)", c.FailingSince.UTC().Format("2006-01-02 15:04:05Z"), c.FailingRuns)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Host, c.Change, dash(string(c.Before)), dash(string(c.After)), since)
	}
	return tw.Flush()
}
