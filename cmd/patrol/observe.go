package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/failover"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/internal/sdnotify"
	"github.com/patrol-dev/patrol/queue"
)

// Default metrics listeners, one port per role so that a scheduler and a
// worker can share a host. docs/metrics.md lists them.
const (
	devMetricsAddr       = "127.0.0.1:9460"
	schedulerMetricsAddr = "127.0.0.1:9461"
	workerMetricsAddr    = "127.0.0.1:9462"
)

// observeFlags are the flags of every long-running role.
func observeFlags(defaultAddr string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metrics-addr", Value: defaultAddr, EnvVars: []string{"PATROL_METRICS_ADDR"},
			Usage: "HOST:PORT serving /metrics, /livez and /readyz (':PORT' for every interface, '' for none)"},
		&cli.BoolFlag{Name: "pprof", EnvVars: []string{"PATROL_PPROF"}, Usage: "also serve Go's profiler under /debug/pprof/ on the metrics listener"},
	}
}

// observed is a role's metrics registry and the queue that reports to it.
type observed struct {
	reg  *prometheus.Registry
	q    *queue.Queue
	etcd *metrics.Etcd
	// space is etcd's alarm state as last read (see followAlarms).
	space *alarmState
}

// openRole connects for a long-running role: it returns the role's
// metrics and queue (see observe), its --id (default ROLE-HOSTNAME-PID) and
// a function closing the connection.
func openRole(c *cli.Context, role string) (o observed, id string, closeQ func(), err error) {
	q, closeQ, err := openQueue(c.Context, c)
	if err != nil {
		return observed{}, "", nil, err
	}
	if id = c.String("id"); id == "" {
		id = defaultID(role)
	}
	return observe(role, q.WithLogger(appOf(c).log)), id, closeQ, nil
}

// checkTTL refuses a lease TTL below etcd's 2s minimum.
func checkTTL(flag string, ttl, def time.Duration) error {
	if ttl < 2*time.Second {
		return usageErr("--%s %s: etcd's minimum lease TTL is 2s; use 2s or more (default %s)", flag, ttl, def)
	}
	return nil
}

// observe returns a registry for role and q reporting its etcd
// transactions to it.
func observe(role string, q *queue.Queue) observed {
	reg := metrics.NewRegistry(role, version)
	e := metrics.NewEtcd(reg)
	return observed{reg: reg, q: q.WithObserver(e), etcd: e, space: &alarmState{}}
}

// serve starts the metrics listener unless --metrics-addr is empty, and
// tells systemd the role is ready once started is closed (and that it is
// stopping when ctx ends). ready says why the role is not ready, for
// /readyz; etcd's answering is checked besides. The returned function
// stops both and waits for them.
func (o observed) serve(ctx context.Context, c *cli.Context, log zerolog.Logger, started <-chan struct{}, ready func() error) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	if addr := c.String("metrics-addr"); addr != "" {
		srv, err := metrics.Listen(metrics.ServerConfig{
			Addr: addr, Gatherer: o.reg, Pprof: c.Bool("pprof"), Log: log,
			Ready: func(ctx context.Context) error {
				if err := ready(); err != nil {
					return err
				}
				if err := o.space.err(); err != nil {
					return err
				}
				return etcdAnswers(ctx, o.q)
			},
		})
		if err != nil {
			cancel()
			return nil, usageErr("--metrics-addr: %v", err)
		}
		wg.Go(func() {
			if err := srv.Serve(ctx); err != nil {
				log.Error().Err(err).Msg("metrics listener stopped")
			}
		})
	}
	wg.Go(func() { o.followAlarms(ctx, log) })
	wg.Go(func() {
		failover.Run(ctx, o.q.Client(), failover.Config{Log: log.With().Str("component", "failover").Logger(), Changed: o.etcd.SetEndpoints})
	})
	wg.Go(func() {
		select {
		case <-started:
		case <-ctx.Done():
			return
		}
		if _, err := sdnotify.Notify(sdnotify.Ready); err != nil {
			log.Warn().Err(err).Msg("could not tell systemd we are ready")
		}
		<-ctx.Done()
		sdnotify.Notify(sdnotify.Stopping)
	})
	return stop, nil
}

// alarmPoll is how often a role reads etcd's alarms.
const alarmPoll = 10 * time.Second

// alarmState is etcd's NOSPACE alarm as a role last read it.
type alarmState struct {
	mu      sync.Mutex
	noSpace bool
	detail  string
}

// err says why the role cannot work while etcd is out of space, for
// /readyz.
func (a *alarmState) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.noSpace {
		return nil
	}
	return fmt.Errorf("etcd is out of space (NOSPACE alarm%s): it takes no write; free space and run `patrol space --reclaim` (docs/runbook.md#patroletcdnospace)", a.detail)
}

// followAlarms reads etcd's alarms every alarmPoll until ctx ends: it sets
// patrol_etcd_alarm, keeps the state /readyz reports, and logs each change
// of it once (not each failed write).
func (o observed) followAlarms(ctx context.Context, log zerolog.Logger) {
	t := time.NewTicker(alarmPoll)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		sp, err := o.q.Space(rctx)
		cancel()
		if err == nil {
			o.etcd.SetAlarms(sp.Alarms)
			detail := ""
			if sp.Quota > 0 {
				detail = fmt.Sprintf(": database %s of a %s quota", bytesText(int(sp.Size)), bytesText(int(sp.Quota)))
			}
			o.space.mu.Lock()
			was := o.space.noSpace
			o.space.noSpace, o.space.detail = sp.NoSpace, detail
			o.space.mu.Unlock()
			switch {
			case sp.NoSpace && !was:
				log.Error().Str("alarm", "NOSPACE").Int64("db_size", sp.Size).Int64("quota", sp.Quota).
					Msg("etcd is out of space: it takes reads and deletes only, so no task starts or finishes; free space (patrol delete, patrol cancel) and run `patrol space --reclaim`")
			case !sp.NoSpace && was:
				log.Info().Msg("etcd takes writes again: the NOSPACE alarm is disarmed")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// etcdAnswers checks that etcd serves a linearizable read: it fails while
// the cluster has no quorum or cannot be reached. It reads a key under the
// prefix, which a user limited to the prefix may read.
func etcdAnswers(ctx context.Context, q *queue.Queue) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := q.Client().Get(ctx, q.Keys().Wake(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd does not answer: %w", err)
	}
	return nil
}
