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
			workers, err := q.Workers(ctx)
			if err != nil {
				return fmt.Errorf("list workers: %w", err)
			}
			running, err := q.RunningByWorker(ctx)
			if err != nil {
				return fmt.Errorf("list running tasks: %w", err)
			}
			type row struct {
				ID        string `json:"id"`
				Zone      string `json:"zone"`
				Running   int    `json:"running"`
				Capacity  int    `json:"capacity"`
				LeaseLeft int64  `json:"lease_left_s"`
				Version   string `json:"version"`
			}
			rows := make([]row, 0, len(workers))
			for _, w := range workers {
				ttl, err := q.Client().TimeToLive(ctx, w.Lease)
				left := int64(-1)
				if err == nil {
					left = ttl.TTL
				}
				rows = append(rows, row{ID: w.ID, Zone: w.Zone, Running: running[w.ID], Capacity: w.Capacity, LeaseLeft: left, Version: w.Version})
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
