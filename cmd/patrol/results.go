package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func resultsCommand() *cli.Command {
	return batchCommand("results", "show one row per host of a batch: status, attempts, duration, worker, message",
		[]string{"table", "json"}, time.Minute, nil, func(b batchCall) error {
			rows, bad, err := b.q.Results(b.ctx, b.batch)
			if err != nil {
				return notFound(b.batch, err)
			}
			for _, v := range bad {
				b.a.log.Error().Str("key", v.Key()).Err(v.Err).Msg("malformed value; shown as an error row")
			}
			if b.output == "json" {
				enc := json.NewEncoder(b.a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			printResults(b.a.stdout, rows)
			return nil
		})
}

func printResults(w io.Writer, rows []queue.HostResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATUS\tATTEMPTS\tDURATION\tWORKER\tMESSAGE")
	for _, r := range rows {
		dur := "-"
		if r.Status != queue.StatusPending && r.Status != queue.StatusRunning {
			dur = (time.Duration(r.DurationMS) * time.Millisecond).String()
		}
		worker := r.Worker
		if worker == "" {
			worker = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Host, r.Status, r.Attempts, dur, worker, oneLine(r.Message))
	}
	tw.Flush()
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
