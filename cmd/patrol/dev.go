package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run everything in one process: an embedded etcd, a scheduler and workers (--demo runs a sample batch)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Usage: "embedded etcd data directory (default: USER_CACHE_DIR/patrol/dev-etcd)"},
			&cli.StringFlag{Name: "listen-client", Value: "127.0.0.1:2379", Usage: "HOST:PORT the embedded etcd serves clients on (port 0 picks one)"},
			&cli.Int64Flag{Name: "quota-backend-bytes", Usage: "the embedded etcd's database quota, past which it takes reads and deletes only (0: etcd's default, 2 GiB); small values try out running out of space"},
			&cli.IntFlag{Name: "workers", Value: 4, Usage: "workers to run"},
			&cli.IntFlag{Name: "concurrency", Value: worker.DefaultConcurrency, Usage: "checks each worker runs at once"},
			&cli.BoolFlag{Name: "demo", Usage: "start demo targets on loopback, run a batch against them, print the results and exit"},
		}, append(webFlags("web-listen", webListenAddr), observeFlags(devMetricsAddr)...)...),
		Action: dev,
	}
}

func dev(c *cli.Context) error {
	a := appOf(c)
	nWorkers := c.Int("workers")
	if nWorkers < 1 {
		return usageErr("--workers %d: run at least 1 worker", nWorkers)
	}
	if n := c.Int("concurrency"); n < 1 || n > worker.MaxConcurrency {
		return usageErr("--concurrency %d: give 1 to %d", n, worker.MaxConcurrency)
	}
	dir := c.String("data-dir")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return usageErr("no user cache directory (%v): pass --data-dir DIR", err)
		}
		dir = filepath.Join(cache, "patrol", "dev-etcd")
	}
	if q := c.Int64("quota-backend-bytes"); q < 0 || (q > 0 && q < 1<<20) {
		return usageErr("--quota-backend-bytes %d: give 0 for etcd's default, or at least 1048576 (1 MiB)", q)
	}
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: dir, ClientAddr: c.String("listen-client"), Log: a.log, QuotaBackendBytes: c.Int64("quota-backend-bytes")})
	if err != nil {
		return fmt.Errorf("%w (is another `patrol dev` or etcd using %s? pass --listen-client 127.0.0.1:0 to pick a free port)",
			err, c.String("listen-client"))
	}
	defer srv.Close()
	a.log.Info().Str("endpoint", srv.Endpoint()).Str("data_dir", dir).Msg("embedded etcd serving clients")

	ccfg := clientv3.Config{
		Endpoints:   []string{srv.Endpoint()},
		DialTimeout: c.Duration("dial-timeout"),
		Logger:      logging.Zap(a.log.With().Str("component", "etcd-client").Logger(), zapcore.WarnLevel),
	}
	keepalive(&ccfg)
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	o := observe("dev", queue.New(cli, c.String("prefix")).WithLogger(a.log))
	q := o.q
	o.reg.MustRegister(metrics.NewQueueCollector(q), metrics.NewScheduleCollector(q, scheduler.NextRun))

	ctx, cancel := context.WithCancel(c.Context)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // roles release their claims and revoke their leases
	}()
	sched, err := scheduler.New(q, scheduler.Config{ID: "dev-scheduler", Log: a.log, Metrics: metrics.NewScheduler(o.reg)})
	if err != nil {
		return err
	}
	wm := metrics.NewWorker(o.reg) // shared: the workers' sum
	workers := make([]*worker.Worker, nWorkers)
	for i := range workers {
		workers[i], err = worker.New(q, worker.Config{ID: fmt.Sprintf("dev-worker-%d", i+1), Concurrency: c.Int("concurrency"), Version: version,
			DrainTimeout: 5 * time.Second, Log: a.log, Metrics: wm})
		if err != nil {
			return err
		}
	}
	started := make(chan struct{})
	wg.Go(func() {
		defer close(started)
		for _, ch := range append([]<-chan struct{}{sched.Started()}, workerStarts(workers)...) {
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	})
	stop, err := o.serve(ctx, c, a.log, started, func() error {
		for _, r := range append([]func() error{sched.Ready}, workerReadies(workers)...) {
			if err := r(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer stop()
	wg.Go(func() { sched.Run(ctx) })
	for _, w := range workers {
		wg.Go(func() { w.Run(ctx) })
	}

	if c.Bool("demo") {
		return runDemo(ctx, q, a)
	}
	url, token, stopWeb, webErr, err := devWeb(ctx, c, o, a.log)
	if err != nil {
		return err
	}
	defer stopWeb()

	fmt.Fprintf(a.stdout, "Patrol dev is running: embedded etcd at %s (data in %s), 1 scheduler, %d workers.\n", srv.Endpoint(), dir, nWorkers)
	if url != "" {
		fmt.Fprintf(a.stdout, "Web console and API: %s\n", url)
		if token != "" {
			fmt.Fprintf(a.stdout, "Operator token for this run (cancel, retry, submit): %s\n", token)
		}
	}
	fmt.Fprintf(a.stdout, "Submit a batch from another terminal:\n\n  patrol --endpoints %s submit -i hosts.txt --check tcp --wait\n\nStop with Ctrl-C.\n", srv.Endpoint())
	select {
	case <-ctx.Done():
		fmt.Fprintln(a.stderr, "stopping...")
		return nil
	case err := <-srv.Err():
		return fmt.Errorf("embedded etcd failed: %w", err)
	case err := <-webErr:
		return err
	}
}

func workerStarts(ws []*worker.Worker) []<-chan struct{} {
	out := make([]<-chan struct{}, len(ws))
	for i, w := range ws {
		out[i] = w.Started()
	}
	return out
}

func workerReadies(ws []*worker.Worker) []func() error {
	out := make([]func() error, len(ws))
	for i, w := range ws {
		out[i] = w.Ready
	}
	return out
}
