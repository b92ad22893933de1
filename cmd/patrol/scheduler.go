package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/scheduler"
)

func schedulerCommand() *cli.Command {
	return &cli.Command{
		Name:  "scheduler",
		Usage: "run a scheduler: one of any number of candidates, the elected one shards batches and requeues lost work",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "id", Usage: "scheduler ID (default scheduler-HOSTNAME-PID)"},
			&cli.DurationFlag{Name: "session-ttl", Value: scheduler.DefaultSessionTTL,
				Usage: "election session TTL: a dead leader is replaced within about this long (minimum 2s)"},
		},
		Action: func(c *cli.Context) error {
			a := appOf(c)
			if ttl := c.Duration("session-ttl"); ttl < 2*time.Second {
				return usageErr("--session-ttl %s: etcd's minimum lease TTL is 2s; use 2s or more (default 5s)", ttl)
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			id := c.String("id")
			if id == "" {
				id = defaultID("scheduler")
			}
			s, err := scheduler.New(q, scheduler.Config{ID: id, SessionTTL: c.Duration("session-ttl"), Log: a.log})
			if err != nil {
				return err
			}
			return s.Run(c.Context)
		},
	}
}
