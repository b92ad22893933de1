package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

func workersCommand() *cli.Command {
	return queueCommand("workers", "list live workers: ID, zone, running checks, capacity, lease time left, version", "",
		[]string{"table", "json"}, 30*time.Second, nil, nil, func(b queueCall) error {
			a, q, ctx, out := b.a, b.q, b.ctx, b.output
			warnNoSpace(b)
			rows, err := q.WorkerRows(ctx)
			if err != nil {
				return err
			}
			if out == "json" {
				return json.NewEncoder(a.stdout).Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(a.stdout, "no live workers: start one with `patrol worker`")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tZONE\tRUNNING\tCAPACITY\tLEASE LEFT\tVERSION")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%ds\t%s\n", r.ID, r.Zone, r.Running, r.Capacity, r.LeaseLeft, r.Version)
			}
			return tw.Flush()
		})
}
