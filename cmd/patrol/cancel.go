package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func cancelCommand() *cli.Command {
	return batchCommand("cancel", "cancel a running batch: pending hosts end cancelled, running checks are aborted; results so far stay",
		[]string{"table", "json"}, 30*time.Second, nil, func(b queueCall) error {
			cancelled, err := b.q.Cancel(b.ctx, b.batch)
			if err != nil {
				return notFound(b.batch, err)
			}
			if b.output == "json" {
				return json.NewEncoder(b.a.stdout).Encode(map[string]any{"batch_id": b.batch, "cancelled": cancelled})
			}
			if !cancelled {
				fmt.Fprintf(b.a.stdout, "batch %s had already finished; nothing to cancel\n", b.batch)
				return nil
			}
			fmt.Fprintf(b.a.stdout, "batch %s: cancel requested; follow it with `patrol status %s`\n", b.batch, b.batch)
			return nil
		})
}
