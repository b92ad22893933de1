package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/urfave/cli/v2"
)

func watchCommand() *cli.Command {
	return batchCommand("watch", "follow a batch until it finishes; exit 0 if every host passed (warnings too, unless --fail-on warn), 2 if any did not (Ctrl-C leaves it running)",
		[]string{"table", "json"}, 365*24*time.Hour, []cli.Flag{failOnFlag()}, func(b queueCall) error {
			warnFails, err := failOnWarn(b.c)
			if err != nil {
				return err
			}
			if _, err := b.q.LoadBatch(b.ctx, b.batch); err != nil {
				return notFound(b.batch, err)
			}
			sum, err := waitBatch(b.c.Context, b.q, b.batch, b.a.stderr)
			if err != nil {
				return err
			}
			if b.output == "json" {
				writeJSON(b.a.stdout, map[string]any{"batch_id": b.batch, "summary": sum})
			}
			return finishedExit(sum, warnFails)
		})
}

func writeJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
