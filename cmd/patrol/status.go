package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func statusCommand() *cli.Command {
	return batchCommand("status", "show how many hosts of a batch stand in each state",
		[]string{"table", "json"}, time.Minute, nil, func(b queueCall) error {
			counts, spec, at, err := b.q.Count(b.ctx, b.batch)
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
			stalled := !done && warnNoSpace(b)
			if stalled {
				state = "stalled: etcd is out of space"
			}
			zones, err := zoneStatus(b, spec, counts)
			if err != nil {
				return err
			}
			if b.output == "json" {
				batchZones := map[string]queue.ZoneState{}
				for _, z := range spec.Zones {
					batchZones[z] = zones[z]
				}
				return json.NewEncoder(b.a.stdout).Encode(map[string]any{
					"batch_id": spec.ID, "state": state, "check": spec.Check, "hosts": spec.Hosts,
					"created_at": spec.CreatedAt, "counts": counts, "zones": batchZones, "summary": summaryOrNil(sum, done),
				})
			}
			w := b.a.stdout
			fmt.Fprintf(w, "batch:    %s\nstate:    %s\ncheck:    %s\ncreated:  %s (%s ago)\n",
				spec.ID, state, spec.Check, spec.CreatedAt.Local().Format(time.DateTime), time.Since(spec.CreatedAt).Round(time.Second))
			fmt.Fprintf(w, "hosts:    %d\n", spec.Hosts)
			if age := time.Since(at); !done && !at.IsZero() && age > 5*time.Second {
				fmt.Fprintf(w, "results as the leader counted them %s ago (it publishes them every second while it leads: see `patrol leader`)\n", age.Round(time.Second))
			}
			for _, s := range queue.Statuses() {
				fmt.Fprintf(w, "  %-9s %d\n", s, counts[s])
			}
			if len(spec.Zones) > 1 {
				byZone, err := b.q.ZoneCounts(b.ctx, b.batch)
				if err != nil {
					return err
				}
				for _, name := range spec.Zones {
					c := byZone[name]
					var parts []string
					for _, st := range queue.Statuses() {
						if c[st] > 0 {
							parts = append(parts, fmt.Sprintf("%s %d", st, c[st]))
						}
					}
					fmt.Fprintf(w, "zone %s: %s\n", name, strings.Join(parts, ", "))
				}
			}
			for _, name := range spec.Zones {
				z := zones[name]
				switch {
				case z.Pending > 0 && z.Workers == 0:
					fmt.Fprintf(w, "zone %s: %d pending, no live workers: start `patrol worker --zone %s`\n", name, z.Pending, name)
				case !done:
					fmt.Fprintf(w, "zone %s: %d pending, %d live workers\n", name, z.Pending, z.Workers)
				}
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

// zoneStatus is the batch's pending hosts and live workers per zone. A
// batch in one zone takes its pending count from counts; one across
// several zones counts its ready keys (queue.ZoneStatus), which costs as
// much as the batch has pending tasks.
func zoneStatus(b queueCall, spec queue.BatchSpec, counts queue.Counts) (map[string]queue.ZoneState, error) {
	if len(spec.Zones) != 1 {
		return b.q.ZoneStatus(b.ctx, b.batch)
	}
	workers, err := b.q.Workers(b.ctx)
	if err != nil {
		return nil, err
	}
	z := queue.ZoneState{Pending: counts[queue.StatusPending]}
	for _, w := range workers {
		if w.Zone == spec.Zones[0] {
			z.Workers++
		}
	}
	return map[string]queue.ZoneState{spec.Zones[0]: z}, nil
}
