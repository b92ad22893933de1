package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/worker"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "run a worker: claims tasks, runs their checks and commits the results",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "id", Usage: "worker ID (default worker-HOSTNAME-PID)"},
			&cli.IntFlag{Name: "concurrency", Value: worker.DefaultConcurrency, Usage: "checks run at once"},
			&cli.DurationFlag{Name: "drain-timeout", Value: worker.DefaultDrainTimeout,
				Usage: "on SIGTERM, how long running checks may finish before their tasks are released (a second signal releases at once)"},
			&cli.StringFlag{Name: "zone", Value: "default", EnvVars: []string{"PATROL_ZONE"},
				Usage: "the zone this worker runs in: it only checks hosts whose zone variable is this zone"},
			&cli.DurationFlag{Name: "lease-ttl", Value: worker.DefaultLeaseTTL,
				Usage: "lease TTL: a dead worker's tasks are requeued about this long after it died (minimum 2s)"},
		},
		Action: func(c *cli.Context) error {
			a := appOf(c)
			if n := c.Int("concurrency"); n < 1 {
				return usageErr("--concurrency %d: must be at least 1", n)
			}
			if err := queue.ValidateZone(c.String("zone")); err != nil {
				return usageErr("--zone: %v", err)
			}
			if ttl := c.Duration("lease-ttl"); ttl < 2*time.Second {
				return usageErr("--lease-ttl %s: etcd's minimum lease TTL is 2s; use 2s or more (default 10s)", ttl)
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			id := c.String("id")
			if id == "" {
				id = defaultID("worker")
			}
			w, err := worker.New(q, worker.Config{
				ID:           id,
				Concurrency:  c.Int("concurrency"),
				LeaseTTL:     c.Duration("lease-ttl"),
				Zone:         c.String("zone"),
				DrainTimeout: c.Duration("drain-timeout"),
				Version:      version,
				Log:          a.log,
			})
			if err != nil {
				return usageErr("%v", err)
			}
			// The first SIGINT/SIGTERM ends c.Context and starts the drain;
			// a second one ends it at once.
			sig := make(chan os.Signal, 2)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			done := make(chan struct{})
			defer close(done)
			go func() {
				for n := 0; ; n++ {
					select {
					case <-sig:
						if n >= 1 {
							a.log.Warn().Msg("second signal: releasing running tasks and exiting")
							w.Kill()
							return
						}
					case <-done:
						return
					}
				}
			}()
			return w.Run(c.Context)
		},
	}
}
