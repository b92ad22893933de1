// Package failover keeps an etcd client off members that stop answering.
//
// The etcd client spreads requests over every endpoint it was given, and
// learns that a member is gone only when its TCP connection breaks. A
// member that hangs (a disk stall, a VM pause, SIGSTOP) or is cut off
// keeps its connections open: each request sent to it waits out its
// deadline, and streams on it (a session's lease keepalives, watches)
// wait with it. gRPC's keepalive would close such a connection, but
// grpc-go pings no more often than every 10 s, and etcd refuses pings
// more often than its --grpc-keepalive-min-time (5 s by default): a hung
// member would cost 12 s or more, longer than a worker's lease lasts.
//
// Run probes each endpoint on a connection of its own, twice a second,
// with a short deadline, and asks it whether it knows a leader. An
// endpoint that fails Down probes in a row is taken out of the client's
// endpoint list (SetEndpoints), which closes its connections: requests and
// streams on it fail at once and the client retries them on the others. It
// is put back after Up good probes in a row. Run never leaves the client
// with no endpoint: when none answers (an outage, or this process cut off),
// the client keeps them all, so it reconnects wherever etcd comes back.
package failover

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Config tunes Run; zero values take the defaults.
type Config struct {
	// Every is how often each endpoint is probed (default 500ms).
	Every time.Duration
	// Timeout bounds each probe (default 1s).
	Timeout time.Duration
	// Down is how many failed probes in a row take an endpoint out
	// (default 2); Up is how many good ones put it back (default 2).
	Down, Up int
	// Log receives one line per change of an endpoint's state.
	Log zerolog.Logger
	// Changed, if set, is called with how many endpoints answer after
	// each change, and once at the start (when all are taken to).
	Changed func(answering, configured int)
}

func (c *Config) defaults() {
	if c.Every <= 0 {
		c.Every = 500 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.Down <= 0 {
		c.Down = 2
	}
	if c.Up <= 0 {
		c.Up = 2
	}
}

// Run probes cli's endpoints until ctx ends and keeps the client's
// endpoint list to those that answer. With fewer than two endpoints there
// is nowhere to fail over to, and it returns at once. The endpoint list
// is the one cli had when Run started; nothing else may change it while
// Run runs.
func Run(ctx context.Context, cli *clientv3.Client, cfg Config) {
	cfg.defaults()
	all := cli.Endpoints()
	if cfg.Changed != nil {
		cfg.Changed(len(all), len(all))
	}
	if len(all) < 2 {
		return
	}
	f := &follower{cli: cli, cfg: cfg, all: all, out: map[string]bool{}}
	var wg sync.WaitGroup
	for _, ep := range all {
		wg.Go(func() { f.probe(ctx, ep) })
	}
	wg.Wait()
}

// follower is Run's state, shared by one probe loop per endpoint.
type follower struct {
	cli *clientv3.Client
	cfg Config
	all []string

	mu  sync.Mutex
	out map[string]bool // endpoints taken out of the client's list
}

// probe asks ep whether it answers, every cfg.Every, until ctx ends, and
// reports each change of its state.
func (f *follower) probe(ctx context.Context, ep string) {
	var conn *grpc.ClientConn // dialled lazily; redialled after a failure to dial
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	good, bad := 0, 0
	var lastErr error
	t := time.NewTicker(f.cfg.Every)
	defer t.Stop()
	for {
		if conn == nil {
			// Dial does not block: a member that is down fails the probe
			// below, not here.
			c, err := f.cli.Dial(ep)
			if err == nil {
				conn = c
			} else {
				lastErr = err
			}
		}
		if conn != nil {
			lastErr = ask(ctx, conn, f.cfg.Timeout)
		}
		if ctx.Err() != nil {
			return
		}
		if lastErr == nil {
			good, bad = good+1, 0
			if good == f.cfg.Up {
				f.set(ep, false, nil)
			}
		} else {
			good, bad = 0, bad+1
			if bad == f.cfg.Down {
				f.set(ep, true, lastErr)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ask is one probe: ep must answer a status request within timeout and
// know a leader (a member cut off from the others answers, but serves no
// linearizable request).
func ask(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return fmt.Errorf("no answer within %s: %w", timeout, err)
	}
	if resp.Leader == 0 {
		return fmt.Errorf("it answers but knows no leader (cut off from the others, or an election is under way)")
	}
	return nil
}

// set records whether ep is out and, on a change, gives the client the
// endpoints that answer (all of them, when none does).
func (f *follower) set(ep string, out bool, why error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.out[ep] == out {
		return
	}
	f.out[ep] = out
	inUse := slices.DeleteFunc(slices.Clone(f.all), func(e string) bool { return f.out[e] })
	answering := len(inUse)
	none := answering == 0
	if none {
		inUse = f.all
	}
	if !slices.Equal(inUse, f.cli.Endpoints()) {
		f.cli.SetEndpoints(inUse...)
	}
	switch {
	case none:
		f.cfg.Log.Warn().Str("endpoint", ep).Err(why).Strs("using", inUse).
			Msg("no etcd member answers: keeping every endpoint, so the client reconnects wherever etcd comes back")
	case out:
		f.cfg.Log.Warn().Str("endpoint", ep).Err(why).Strs("using", inUse).
			Msgf("etcd member at %s stopped answering (%d probes in a row failed): sending requests to the others", ep, f.cfg.Down)
	default:
		f.cfg.Log.Info().Str("endpoint", ep).Strs("using", inUse).Msgf("etcd member at %s answers again: sending requests to it", ep)
	}
	if f.cfg.Changed != nil {
		f.cfg.Changed(answering, len(f.all))
	}
}
