package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/urfave/cli/v2"
)

func watchCommand() *cli.Command {
	return batchCommand("watch", "follow a batch until it finishes; exit 0 if every host passed, 2 if any did not (Ctrl-C leaves it running)",
		[]string{"table", "json"}, 365*24*time.Hour, nil, func(b queueCall) error {
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
			if sum.Failed() {
				return exitErr{code: exitFailedHosts}
			}
			return nil
		})
}

func writeJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
