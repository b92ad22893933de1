package main

import (
	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/scheduler"
)

func schedulerCommand() *cli.Command {
	return &cli.Command{
		Name:  "scheduler",
		Usage: "run a scheduler: one of any number of candidates, the elected one shards batches and requeues lost work",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "id", Usage: "scheduler ID (default scheduler-HOSTNAME-PID)"},
			&cli.DurationFlag{Name: "session-ttl", Value: scheduler.DefaultSessionTTL,
				Usage: "election session TTL: a dead leader is replaced within about this long (minimum 2s)"},
			&cli.DurationFlag{Name: "retention", Value: scheduler.DefaultRetention,
				Usage: "how long a finished batch and its results stay in etcd before they are deleted"},
		}, observeFlags(schedulerMetricsAddr)...),
		Action: func(c *cli.Context) error {
			a := appOf(c)
			if r := c.Duration("retention"); r <= 0 {
				return usageErr("--retention %s: must be positive, e.g. 168h", r)
			}
			if err := checkTTL("session-ttl", c.Duration("session-ttl"), scheduler.DefaultSessionTTL); err != nil {
				return err
			}
			o, id, closeQ, err := openRole(c, "scheduler")
			if err != nil {
				return err
			}
			defer closeQ()
			o.reg.MustRegister(metrics.NewQueueCollector(o.q), metrics.NewScheduleCollector(o.q, scheduler.NextRun))
			s, err := scheduler.New(o.q, scheduler.Config{ID: id, SessionTTL: c.Duration("session-ttl"), Retention: c.Duration("retention"),
				Log: a.log, Metrics: metrics.NewScheduler(o.reg)})
			if err != nil {
				return err
			}
			stop, err := o.serve(c.Context, c, a.log, s.Started(), s.Ready)
			if err != nil {
				return err
			}
			defer stop()
			return s.Run(c.Context)
		},
	}
}
