package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func retryCommand() *cli.Command {
	return batchCommand("retry", "run a finished batch's failed, errored and dead hosts again as a new round, keeping their history",
		[]string{"table", "json"}, time.Minute, []cli.Flag{
			&cli.BoolFlag{Name: "failed", Usage: "retry hosts that failed, errored or ended dead (required: says what to retry)"},
			&cli.BoolFlag{Name: "cancelled", Usage: "also retry hosts that were cancelled or skipped"},
			&cli.BoolFlag{Name: "wait", Usage: "wait for the new round to finish; exit 0 if every host passed (warnings too, unless --fail-on warn), 2 if any did not"},
			failOnFlag(),
		}, func(b queueCall) error {
			warnFails, err := failOnWarn(b.c)
			if err != nil {
				return err
			}
			if !b.c.Bool("failed") && !b.c.Bool("cancelled") {
				return usageErr("say which hosts to retry: --failed (fail, error, dead) and/or --cancelled (cancelled, skipped)")
			}
			statuses := queue.RetryStatuses(b.c.Bool("failed"), b.c.Bool("cancelled"))
			round, err := b.q.RequestRetry(b.ctx, b.batch, statuses)
			switch {
			case errors.Is(err, queue.ErrNotFinished):
				return fmt.Errorf("batch %s is still running: wait for it to finish (patrol submit --wait, patrol status) or cancel it first", b.batch)
			case err != nil:
				return notFound(b.batch, err)
			}
			if b.output == "json" {
				json.NewEncoder(b.a.stdout).Encode(map[string]any{"batch_id": b.batch, "round": round})
			} else {
				fmt.Fprintf(b.a.stdout, "batch %s: round %d queued\n", b.batch, round)
			}
			if !b.c.Bool("wait") {
				return nil
			}
			sum, err := waitBatch(b.c.Context, b.q, b.batch, b.a.stderr)
			if err != nil {
				return err
			}
			return finishedExit(sum, warnFails)
		})
}
