package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/worker"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "run a worker: claims tasks, runs their checks and commits the results",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "id", Usage: "worker ID (default worker-HOSTNAME-PID)"},
			&cli.IntFlag{Name: "concurrency", Value: worker.DefaultConcurrency, Usage: "checks run at once"},
			&cli.DurationFlag{Name: "drain-timeout", Value: worker.DefaultDrainTimeout,
				Usage: "on SIGTERM, how long running checks may finish before their tasks are released (a second signal releases at once)"},
			&cli.StringSliceFlag{Name: "allow-exec", Usage: "allow the exec check to run NAME: NAME=/path/to/program [args...] (repeatable); submitters name it with --param name=NAME"},
			&cli.StringSliceFlag{Name: "allow-ssh", Usage: "allow the ssh check to run NAME on hosts: NAME='df -h /' (repeatable)"},
			&cli.StringSliceFlag{Name: "ssh-key", Usage: "SSH private key file (repeatable); the SSH agent is also used when SSH_AUTH_SOCK is set"},
			&cli.StringFlag{Name: "ssh-user", Usage: "SSH user when a host has no ansible_user or user variable (default: the user running the worker)"},
			&cli.StringFlag{Name: "known-hosts", Usage: "known_hosts file to verify SSH host keys against (default ~/.ssh/known_hosts)"},
			&cli.StringFlag{Name: "zone", Value: "default", EnvVars: []string{"PATROL_ZONE"},
				Usage: "the zone this worker runs in: it only checks hosts whose zone variable is this zone"},
			&cli.DurationFlag{Name: "call-timeout", Value: worker.DefaultCallTimeout,
				Usage: "the least time a claim or commit call to etcd is given; the worker allows 4x the 90th percentile of its recent calls when that is longer, so a far etcd is never cut off for being slow"},
			&cli.IntFlag{Name: "request-limit", Value: 0,
				Usage: "claim (and commit) transactions kept in flight, 1-8; 0 adapts it to etcd's latency against the worker's own baseline"},
			&cli.DurationFlag{Name: "lease-ttl", Value: worker.DefaultLeaseTTL,
				Usage: "lease TTL: a dead worker's tasks are requeued about this long after it died (minimum 2s)"},
		}, observeFlags(workerMetricsAddr)...),
		Action: func(c *cli.Context) error {
			a := appOf(c)
			if n := c.Int("concurrency"); n < 1 || n > worker.MaxConcurrency {
				return usageErr("--concurrency %d: give 1 to %d (past that, run more workers)", n, worker.MaxConcurrency)
			}
			if d := c.Duration("call-timeout"); d < worker.MinCallTimeout || d > worker.MaxCallTimeout {
				return usageErr("--call-timeout %s: give %s to %s (default %s)", d, worker.MinCallTimeout, worker.MaxCallTimeout, worker.DefaultCallTimeout)
			}
			if n := c.Int("request-limit"); n < 0 || n > worker.MaxRequestLimit {
				return usageErr("--request-limit %d: give 1 to %d, or 0 to adapt it to etcd's latency", n, worker.MaxRequestLimit)
			}
			if err := queue.ValidateZone(c.String("zone")); err != nil {
				return usageErr("--zone: %v", err)
			}
			if err := checkTTL("lease-ttl", c.Duration("lease-ttl"), worker.DefaultLeaseTTL); err != nil {
				return err
			}
			opts, err := checkOptions(c)
			if err != nil {
				return err
			}
			o, id, closeQ, err := openRole(c, "worker")
			if err != nil {
				return err
			}
			defer closeQ()
			w, err := worker.New(o.q, worker.Config{
				Checks:       opts,
				ID:           id,
				Concurrency:  c.Int("concurrency"),
				LeaseTTL:     c.Duration("lease-ttl"),
				Zone:         c.String("zone"),
				DrainTimeout: c.Duration("drain-timeout"),
				CallTimeout:  c.Duration("call-timeout"),
				RequestLimit: c.Int("request-limit"),
				Version:      version,
				Log:          a.log,
				Metrics:      metrics.NewWorker(o.reg),
			})
			if err != nil {
				return usageErr("%v", err)
			}
			stop, err := o.serve(c.Context, c, a.log, w.Started(), w.Ready)
			if err != nil {
				return err
			}
			defer stop()
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

// checkOptions builds the worker's exec and ssh allowlists from its flags.
func checkOptions(c *cli.Context) (check.Options, error) {
	opts := check.Options{Exec: map[string][]string{}, SSH: map[string]string{},
		SSHKeys: c.StringSlice("ssh-key"), SSHUser: c.String("ssh-user"), KnownHosts: c.String("known-hosts")}
	for _, spec := range c.StringSlice("allow-exec") {
		name, cmdline, ok := strings.Cut(spec, "=")
		argv := strings.Fields(cmdline)
		if !ok || name == "" || len(argv) == 0 {
			return opts, usageErr("--allow-exec %q: write it as NAME=/path/to/program [args...]", spec)
		}
		if !filepath.IsAbs(argv[0]) {
			return opts, usageErr("--allow-exec %s: %q is not an absolute path; name the program by its full path", name, argv[0])
		}
		if _, dup := opts.Exec[name]; dup {
			return opts, usageErr("--allow-exec %s given twice", name)
		}
		opts.Exec[name] = argv
	}
	for _, spec := range c.StringSlice("allow-ssh") {
		name, cmdline, ok := strings.Cut(spec, "=")
		if !ok || name == "" || strings.TrimSpace(cmdline) == "" {
			return opts, usageErr("--allow-ssh %q: write it as NAME='remote command'", spec)
		}
		if _, dup := opts.SSH[name]; dup {
			return opts, usageErr("--allow-ssh %s given twice", name)
		}
		opts.SSH[name] = cmdline
	}
	return opts, nil
}
