package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show how many hosts of a batch stand in each state",
		ArgsUsage: "BATCH",
		Flags:     []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			a := appOf(c)
			out, err := outputFormat(c, "table", "json")
			if err != nil {
				return err
			}
			batch, err := batchArg(c)
			if err != nil {
				return err
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			ctx, cancel := withTimeout(c.Context, time.Minute)
			defer cancel()
			counts, spec, err := q.Count(ctx, batch)
			if err != nil {
				return notFound(batch, err)
			}
			sum, done, err := q.Summary(ctx, batch)
			if err != nil {
				return err
			}
			state := "running"
			if done {
				state = "finished"
			}
			if out == "json" {
				return json.NewEncoder(a.stdout).Encode(map[string]any{
					"batch_id": spec.ID, "state": state, "check": spec.Check, "hosts": spec.Hosts,
					"created_at": spec.CreatedAt, "counts": counts, "summary": summaryOrNil(sum, done),
				})
			}
			fmt.Fprintf(a.stdout, "batch:    %s\nstate:    %s\ncheck:    %s\ncreated:  %s (%s ago)\n",
				spec.ID, state, spec.Check, spec.CreatedAt.Local().Format(time.DateTime), time.Since(spec.CreatedAt).Round(time.Second))
			fmt.Fprintf(a.stdout, "hosts:    %d\n", spec.Hosts)
			for _, s := range []queue.Status{queue.StatusOK, queue.StatusFail, queue.StatusError, queue.StatusRunning, queue.StatusPending} {
				fmt.Fprintf(a.stdout, "  %-8s %d\n", s, counts[s])
			}
			return nil
		},
	}
}

func summaryOrNil(s queue.Summary, done bool) any {
	if !done {
		return nil
	}
	return s
}
