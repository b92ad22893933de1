package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func statusCommand() *cli.Command {
	return batchCommand("status", "show how many hosts of a batch stand in each state",
		[]string{"table", "json"}, time.Minute, nil, func(b batchCall) error {
			counts, spec, err := b.q.Count(b.ctx, b.batch)
			if err != nil {
				return notFound(b.batch, err)
			}
			sum, done, err := b.q.Summary(b.ctx, b.batch)
			if err != nil {
				return err
			}
			state := "running"
			if done {
				state = "finished"
			}
			if b.output == "json" {
				return json.NewEncoder(b.a.stdout).Encode(map[string]any{
					"batch_id": spec.ID, "state": state, "check": spec.Check, "hosts": spec.Hosts,
					"created_at": spec.CreatedAt, "counts": counts, "summary": summaryOrNil(sum, done),
				})
			}
			w := b.a.stdout
			fmt.Fprintf(w, "batch:    %s\nstate:    %s\ncheck:    %s\ncreated:  %s (%s ago)\n",
				spec.ID, state, spec.Check, spec.CreatedAt.Local().Format(time.DateTime), time.Since(spec.CreatedAt).Round(time.Second))
			fmt.Fprintf(w, "hosts:    %d\n", spec.Hosts)
			for _, s := range []queue.Status{queue.StatusOK, queue.StatusFail, queue.StatusError, queue.StatusDead, queue.StatusCancelled,
				queue.StatusSkipped, queue.StatusRunning, queue.StatusRetrying, queue.StatusPending} {
				fmt.Fprintf(w, "  %-9s %d\n", s, counts[s])
			}
			return nil
		})
}

func summaryOrNil(s queue.Summary, done bool) any {
	if !done {
		return nil
	}
	return s
}
