package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/nettest"
	"github.com/patrol-dev/patrol/queue"
)

// demoTargets are loopback servers for `patrol dev --demo`: some healthy,
// some not, some near a threshold, so the demo shows every verdict.
type demoTargets struct {
	web  []inventory.Host // HTTP servers; the last answers 500
	tcp  []inventory.Host // TCP ports; the last is closed
	tls  []inventory.Host // TLS servers whose certificates expire in 90, 20 and 3 days
	ca   string           // the file holding the CA that signed them
	stop func()
}

func startDemoTargets() (*demoTargets, error) {
	var (
		servers   []*http.Server
		listeners []net.Listener
		wg        sync.WaitGroup
	)
	var (
		tlsServers []*nettest.TLSServer
		dir        string
	)
	t := &demoTargets{}
	t.stop = func() {
		for _, s := range servers {
			s.Close()
		}
		for _, l := range listeners {
			l.Close()
		}
		for _, s := range tlsServers {
			s.Close()
		}
		wg.Wait()
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	listen := func() (net.Listener, int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, 0, fmt.Errorf("demo: listen on loopback: %w", err)
		}
		return l, l.Addr().(*net.TCPAddr).Port, nil
	}
	host := func(role string, port int) inventory.Host {
		return inventory.Host{Name: "127.0.0.1:" + strconv.Itoa(port), Address: "127.0.0.1", Port: port, Vars: map[string]string{"role": role}}
	}
	for i, status := range []int{200, 200, 200, 500} {
		l, port, err := listen()
		if err != nil {
			t.stop()
			return nil, err
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			fmt.Fprintf(w, "demo web %d\n", i+1)
		})}
		servers = append(servers, srv)
		wg.Go(func() { srv.Serve(l) })
		t.web = append(t.web, host("web", port))
	}
	for range 2 {
		l, port, err := listen()
		if err != nil {
			t.stop()
			return nil, err
		}
		listeners = append(listeners, l)
		wg.Go(func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		})
		t.tcp = append(t.tcp, host("db", port))
	}
	// A port that was open a moment ago and is now closed: connection refused.
	l, port, err := listen()
	if err != nil {
		t.stop()
		return nil, err
	}
	l.Close()
	t.tcp = append(t.tcp, host("db", port))

	// TLS servers whose certificates, from a CA made up for the demo,
	// expire in 90 days (ok), 20 (within warn_days) and 3 (within fail_days).
	ca, err := nettest.NewCA("Patrol demo CA")
	if err == nil {
		dir, err = os.MkdirTemp("", "patrol-demo-")
	}
	if err == nil {
		t.ca = filepath.Join(dir, "ca.pem")
		err = os.WriteFile(t.ca, ca.PEM(), 0o600)
	}
	for _, days := range []int{90, 20, 3} {
		var cert tls.Certificate
		if err == nil {
			cert, err = ca.Issue(time.Now().Add(time.Duration(days)*24*time.Hour), "127.0.0.1")
		}
		var s *nettest.TLSServer
		if err == nil {
			s, err = nettest.ServeTLS(cert)
		}
		if err != nil {
			t.stop()
			return nil, fmt.Errorf("demo: TLS server: %w", err)
		}
		tlsServers = append(tlsServers, s)
		_, p, _ := net.SplitHostPort(s.Addr)
		port, _ := strconv.Atoi(p)
		t.tls = append(t.tls, host("web", port))
	}
	return t, nil
}

// runDemo runs two batches against the demo targets through the real queue
// and prints their results.
func runDemo(ctx context.Context, q *queue.Queue, a *app) error {
	targets, err := startDemoTargets()
	if err != nil {
		return err
	}
	defer targets.stop()

	batches := []struct {
		check  string
		params map[string]string
		hosts  []inventory.Host
	}{
		{"http", map[string]string{"url": "http://{{.Address}}:{{.Port}}/health", "timeout": "3s"}, targets.web},
		{"tcp", map[string]string{"timeout": "2s"}, targets.tcp},
		{"tls", map[string]string{"ca": targets.ca, "timeout": "3s"}, targets.tls},
	}
	for _, b := range batches {
		if err := check.Validate(b.check, b.params, b.hosts); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		id := queue.NewBatchID(time.Now()) + "-demo-" + b.check
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _, err := q.Submit(sctx, queue.SubmitRequest{ID: id, Check: b.check, Params: b.params, Hosts: b.hosts})
		cancel()
		if err != nil {
			return fmt.Errorf("demo: submit: %w", err)
		}
		fmt.Fprintf(a.stdout, "\n== batch %s: %s check against %d hosts\n", id, b.check, len(b.hosts))
		if _, err := waitBatch(ctx, q, id, a.stderr); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rows, _, err := q.Results(rctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("demo: read results: %w", err)
		}
		printResults(a.stdout, rows)
	}
	if err := demoSchedule(ctx, q, a, targets.tcp); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "\nThe failing hosts are meant to fail: one web server answers 500, one port is closed and one certificate")
	fmt.Fprintln(a.stdout, "expires in 3 days; the one expiring in 20 days passes with a warning (warn_days defaults to 30).")
	fmt.Fprintln(a.stdout, "Run `go run ./cmd/patrol dev` to keep Patrol running and submit your own inventory.")
	return nil
}

// demoSchedule creates a schedule every 2 s against hosts, shows its first
// two runs as the leader fires them, and deletes it.
func demoSchedule(ctx context.Context, q *queue.Queue, a *app, hosts []inventory.Host) error {
	const name = "demo-tcp"
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := q.DeleteSchedule(ctx, name); err != nil && !errors.Is(err, queue.ErrScheduleNotFound) {
		return fmt.Errorf("demo: %w", err)
	}
	spec := queue.ScheduleSpec{Name: name, EveryMS: 2000, Check: "tcp", Params: map[string]string{"timeout": "2s"}}
	if _, err := q.CreateSchedule(ctx, spec, hosts); err != nil {
		return fmt.Errorf("demo: create schedule: %w", err)
	}
	defer q.DeleteSchedule(context.WithoutCancel(ctx), name)
	fmt.Fprintf(a.stdout, "\n== schedule %s: tcp check against %d hosts every 2s (patrol schedule create %s --every 2s ...)\n", name, len(hosts), name)
	var runs []queue.BatchInfo
	for {
		var err error
		if runs, err = q.ScheduleBatches(ctx, name, 0); err != nil {
			return fmt.Errorf("demo: read the schedule's runs: %w", err)
		}
		if n := len(runs); n >= 2 && runs[n-1].Summary != nil && runs[n-2].Summary != nil {
			runs = runs[n-2:] // the first two, newest first
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: the schedule did not run twice within a minute: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		fmt.Fprintf(a.stdout, "run %s for tick %s: ok %d, fail %d\n", r.Spec.ID, r.Spec.ScheduledFor.Format("15:04:05Z"),
			r.Summary.Counts[queue.StatusOK], r.Summary.Counts[queue.StatusFail])
	}
	fmt.Fprintln(a.stdout, "one batch per tick, named after it; a failover never runs a tick twice (patrol schedule describe NAME)")
	return nil
}
