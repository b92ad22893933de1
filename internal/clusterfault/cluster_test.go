//go:build linux

package clusterfault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/proctest"
)

// clusterConfig is what a scenario varies in its cluster.
type clusterConfig struct {
	// quota is --quota-backend-bytes; 0 is etcd's default (2 GiB).
	quota int64
	// compaction is the periodic auto-compaction retention; 0 is off.
	compaction time.Duration
}

// cluster is a 3-member etcd cluster on loopback, one process per member.
type cluster struct {
	t       *testing.T
	bin     string
	members []*member
	// cli reaches every member; closed when the test ends.
	cli *clientv3.Client
}

// memberState is what the test last did to a member.
type memberState int

const (
	up memberState = iota
	stopped
	killed
)

// member is one etcd member process, restartable from its data directory.
type member struct {
	name   string
	id     uint64 // etcd's member ID, from its "member ready" line
	client string // HOST:PORT clients dial
	args   []string
	proc   *proctest.Proc
	starts int
	state  memberState
}

// readyTimeout bounds how long a member takes to serve clients: a new
// cluster's members must elect a leader first.
const readyTimeout = 60 * time.Second

// startCluster starts three members on ports free on loopback. Members
// cannot pick their own ports (each must know the others' peer ports in
// advance), so the test picks them, and picks again if one was taken
// between the pick and the member's bind.
func startCluster(t *testing.T, bin string, cfg clusterConfig) *cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryCluster(t, bin, cfg, attempt)
		if err == nil {
			return c
		}
		if !errors.Is(err, errPortTaken) || attempt == 5 {
			t.Fatalf("start a 3-member etcd cluster (attempt %d): %v", attempt, err)
		}
		t.Logf("attempt %d: %v; picking other ports", attempt, err)
	}
}

var errPortTaken = errors.New("a port was taken")

func tryCluster(t *testing.T, bin string, cfg clusterConfig, attempt int) (*cluster, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	c := &cluster{t: t, bin: bin}
	var initial []string
	for i := range 3 {
		name := fmt.Sprintf("m%d", i+1)
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", name, ports[3+i]))
	}
	dir := filepath.Join(t.TempDir(), strconv.Itoa(attempt))
	for i := range 3 {
		m := &member{name: fmt.Sprintf("m%d", i+1), client: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		m.args = []string{"--name", m.name, "--data-dir", filepath.Join(dir, m.name),
			"--listen-client", m.client, "--listen-peer", fmt.Sprintf("127.0.0.1:%d", ports[3+i]),
			"--initial-cluster", strings.Join(initial, ","), "--unsafe-no-fsync"}
		if cfg.quota > 0 {
			m.args = append(m.args, "--quota-backend-bytes", strconv.FormatInt(cfg.quota, 10))
		}
		if cfg.compaction > 0 {
			m.args = append(m.args, "--auto-compaction-retention", cfg.compaction.String())
		}
		c.members = append(c.members, m)
	}
	if err := c.startAll(c.members...); err != nil {
		for _, m := range c.members {
			m.proc.Stop(t)
		}
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	})
	if err != nil {
		t.Fatalf("connect to the cluster: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	c.cli = cli
	return c, nil
}

// startAll starts the members' processes together (a member is ready only
// once a quorum runs), then waits until each serves clients.
func (c *cluster) startAll(ms ...*member) error {
	for _, m := range ms {
		m.starts++
		name := "etcd-" + m.name
		if m.starts > 1 {
			name = fmt.Sprintf("%s#%d", name, m.starts)
		}
		m.proc = proctest.Start(c.t, c.bin, name, nil, m.args...)
		m.state = up
	}
	for _, m := range ms {
		l, err := m.proc.AwaitLog(readyTimeout, "member ready", nil)
		if err != nil {
			if errors.Is(err, proctest.ErrExited) && portTaken(m.proc) {
				return fmt.Errorf("%s: %w: %v", m.name, errPortTaken, err)
			}
			return err
		}
		if m.id, err = strconv.ParseUint(l.Str("id"), 16, 64); err != nil {
			return fmt.Errorf("%s: member ID %q: %v", m.name, l.Str("id"), err)
		}
	}
	return nil
}

func portTaken(p *proctest.Proc) bool {
	for _, l := range p.Logs("member failed to start") {
		if strings.Contains(l.Str("error"), "address already in use") {
			return true
		}
	}
	return false
}

// freePorts returns n distinct loopback ports free at the moment, drawn
// below the kernel's ephemeral range: port 0 listeners (every other test
// package's) and outgoing connections take theirs from that range, so
// neither lands on these between the pick and the member's bind, nor
// while a killed member is down.
func freePorts(n int) ([]int, error) {
	lo, hi := 20000, ephemeralLow()
	if hi-lo < 1000 {
		lo = 10000
	}
	var ports []int
	seen := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no %d free ports in [%d, %d)", n, lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow is the bottom of the kernel's ephemeral port range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if lo, err := strconv.Atoi(f[0]); err == nil && lo > 1024 {
			return lo
		}
	}
	return 32768
}

// endpoints are the members' client addresses, in order.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return eps
}

// byID returns the member with etcd member ID id, or nil.
func (c *cluster) byID(id uint64) *member {
	for _, m := range c.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

// others returns the members other than m.
func (c *cluster) others(m *member) []*member {
	var out []*member
	for _, o := range c.members {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

// leader asks every running member (Status) who leads, and returns the
// leader they all name. It fails t if they disagree or name none: call it
// when the cluster is settled.
func (c *cluster) leader(ctx context.Context) *member {
	c.t.Helper()
	var lead uint64
	for _, m := range c.members {
		if m.state != up {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.cli.Status(sctx, m.client)
		cancel()
		if err != nil {
			c.t.Fatalf("status of %s: %v", m.name, err)
		}
		if lead != 0 && st.Leader != lead {
			c.t.Fatalf("members disagree on the etcd leader: %x and %x", lead, st.Leader)
		}
		lead = st.Leader
	}
	l := c.byID(lead)
	if l == nil {
		c.t.Fatalf("the members name leader %x, not one of them", lead)
	}
	return l
}

// newLeader returns a wait for the next leader other than old that
// watcher, a running member, learns of after this call: call it before
// the fault, and the wait after. The wait returns the leader and when the
// test saw watcher's line.
func (c *cluster) newLeader(watcher, old *member) (wait func() (*member, time.Time)) {
	before := len(watcher.proc.Logs("leader changed"))
	return func() (*member, time.Time) {
		c.t.Helper()
		seen := 0
		l := watcher.proc.WaitLog(c.t, readyTimeout, "leader changed", func(l proctest.LogLine) bool {
			seen++
			return seen > before && l.Str("leader") != fmt.Sprintf("%x", old.id)
		})
		at := time.Now()
		id, err := strconv.ParseUint(l.Str("leader"), 16, 64)
		if err != nil || c.byID(id) == nil {
			c.t.Fatalf("%s follows leader %q, not a member", watcher.name, l.Str("leader"))
		}
		return c.byID(id), at
	}
}

// kill sends SIGKILL to each member and reaps it.
func (c *cluster) kill(ms ...*member) {
	c.t.Helper()
	for _, m := range ms {
		m.proc.Signal(c.t, syscall.SIGKILL)
	}
	for _, m := range ms {
		m.proc.Wait(c.t, 10*time.Second)
		m.state = killed
	}
}

// stop freezes members with SIGSTOP; cont resumes them.
func (c *cluster) stop(ms ...*member) {
	c.t.Helper()
	for _, m := range ms {
		m.proc.Signal(c.t, syscall.SIGSTOP)
		m.state = stopped
	}
}

func (c *cluster) cont(ms ...*member) {
	c.t.Helper()
	for _, m := range ms {
		m.proc.Signal(c.t, syscall.SIGCONT)
		m.state = up
	}
}

// restart starts killed members again from their data directories, on
// their ports, and waits until they serve clients.
func (c *cluster) restart(ms ...*member) {
	c.t.Helper()
	if err := c.startAll(ms...); err != nil {
		c.t.Fatalf("restart: %v", err)
	}
}
