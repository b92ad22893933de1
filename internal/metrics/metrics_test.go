package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// everything registers every metric Patrol has on one pedantic registry,
// as `patrol dev` does (but for the Go, process and build-info collectors,
// linted on their own registry).
func everything(q *queue.Queue) (*prometheus.Registry, *metrics.Etcd, *metrics.Scheduler, *metrics.Worker) {
	reg := prometheus.NewPedanticRegistry()
	e := metrics.NewEtcd(reg)
	s := metrics.NewScheduler(reg)
	w := metrics.NewWorker(reg)
	metrics.NewWeb(reg, []string{"GET /api/v1/leader"}).Request("GET /api/v1/leader", 200, time.Millisecond)
	reg.MustRegister(metrics.NewQueueCollector(q), metrics.NewScheduleCollector(q, nil))
	return reg, e, s, w
}

func TestMetricNamesLintClean(t *testing.T) {
	env := etcdtest.New(t)
	q := queue.New(env.Client, env.Prefix)
	reg, e, s, w := everything(q)
	// Give every vector a series, so every family is linted.
	e.ObserveTxn("claim", time.Millisecond, context.DeadlineExceeded)
	s.DeadLetters(metrics.DeadLost, 1)
	w.Committed("ok", "tcp")
	w.CheckDone("tcp", "ok", time.Millisecond)

	for name, g := range map[string]prometheus.Gatherer{"product": reg, "base": metrics.NewRegistry("worker", "test")} {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatalf("%s: gather: %v", name, err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: promlint: %s: %s", name, p.Metric, p.Text)
		}
	}
}

// described returns the name and variable labels of every metric cs
// describe.
func described(t *testing.T, cs ...prometheus.Collector) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 1000)
	for _, c := range cs {
		c.Describe(ch)
	}
	close(ch)
	nameRE := regexp.MustCompile(`fqName: "([^"]+)"`)
	labelsRE := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for d := range ch {
		s := d.String()
		m := nameRE.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("cannot read a descriptor: %s", s)
		}
		var labels []string
		if l := labelsRE.FindStringSubmatch(s); l != nil && l[1] != "" {
			labels = strings.Split(l[1], ",")
		}
		out[m[1]] = labels
	}
	return out
}

func TestNoLabelGrowsWithHostsBatchesOrTasks(t *testing.T) {
	// schedule: bounded by metrics.MaxScheduleSeries. route is a closed set
	// too: the web router's patterns, never a path; code is an HTTP status
	// code.
	allowed := []string{"zone", "state", "status", "check", "outcome", "op", "kind", "reason", "watch", "alarm", "schedule", "route", "code"}
	for name, labels := range described(t, patrolCollectors(t)...) {
		for _, l := range labels {
			if !slices.Contains(allowed, l) {
				t.Errorf("%s has label %q; allowed labels are %v (none may grow with hosts, batches or tasks)", name, l, allowed)
			}
		}
	}
}

// patrolCollectors returns every collector Patrol registers, unregistered.
func patrolCollectors(t *testing.T) []prometheus.Collector {
	t.Helper()
	env := etcdtest.New(t)
	var cs []prometheus.Collector
	rec := recorder{&cs}
	metrics.NewEtcd(rec)
	metrics.NewScheduler(rec)
	metrics.NewWorker(rec)
	metrics.NewWeb(rec, []string{"GET /api/v1/leader"})
	cs = append(cs, metrics.NewQueueCollector(queue.New(env.Client, env.Prefix)), metrics.NewScheduleCollector(queue.New(env.Client, env.Prefix), nil))
	return cs
}

// recorder is a Registerer that keeps what is registered on it.
type recorder struct{ cs *[]prometheus.Collector }

func (r recorder) Register(c prometheus.Collector) error { *r.cs = append(*r.cs, c); return nil }
func (r recorder) MustRegister(cs ...prometheus.Collector) {
	*r.cs = append(*r.cs, cs...)
}
func (r recorder) Unregister(prometheus.Collector) bool { return false }

func TestDocsListEveryMetric(t *testing.T) {
	f, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]bool{}
	row := regexp.MustCompile("^\\| `(patrol_[a-z_]+)` \\|")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			documented[m[1]] = true
		}
	}
	registered := described(t, patrolCollectors(t)...)
	registered["patrol_build_info"] = nil
	for name := range registered {
		if !documented[name] {
			t.Errorf("%s is registered but not in docs/metrics.md", name)
		}
	}
	for name := range documented {
		if _, ok := registered[name]; !ok {
			t.Errorf("docs/metrics.md lists %s, which no collector registers", name)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	reg := metrics.NewRegistry("scheduler", "v1.2.3")
	want := fmt.Sprintf(`
# HELP patrol_build_info Always 1; labels name the running version, Go version and role.
# TYPE patrol_build_info gauge
patrol_build_info{goversion=%q,role="scheduler",version="v1.2.3"} 1
`, runtimeVersion())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "patrol_build_info"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg, "go_goroutines", "process_cpu_seconds_total")
	if err != nil || n != 2 {
		t.Fatalf("Go and process collectors: %d series, %v; want 2", n, err)
	}
}

func TestEtcdErrorsAreCountedByKind(t *testing.T) {
	env := etcdtest.New(t)
	reg := prometheus.NewPedanticRegistry()
	e := metrics.NewEtcd(reg)
	// A real transaction over etcd's operation limit.
	ops := make([]clientv3.Op, 0, 200)
	for i := range 200 {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s/k%d", env.Prefix, i), "v"))
	}
	_, tooMany := env.Client.Txn(context.Background()).Then(ops...).Commit()
	if tooMany == nil {
		t.Fatal("a 200-op transaction succeeded; etcd's limit is 128")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, canceled := env.Client.Get(cancelled, env.Prefix)
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	_, timedOut := env.Client.Get(expired, env.Prefix)

	for _, tc := range []struct {
		err  error
		kind string
	}{
		{tooMany, "too_large"},
		{canceled, "canceled"},
		{timedOut, "timeout"},
		{rpctypes.ErrNoLeader, "no_leader"},
		{rpctypes.ErrGRPCNoSpace, "no_space"},
		{rpctypes.ErrLeaseNotFound, "not_found"},
		{errors.New("something else"), "other"},
	} {
		if got := metrics.ErrorKind(tc.err); got != tc.kind {
			t.Errorf("ErrorKind(%v) = %q, want %q", tc.err, got, tc.kind)
		}
		e.ObserveTxn("commit", time.Millisecond, tc.err)
	}
	e.ObserveTxn("commit", time.Millisecond, nil)
	if got := value(t, reg, "patrol_etcd_errors_total", "op", "commit", "kind", "too_large"); got != 1 {
		t.Errorf("too_large commit errors = %v, want 1", got)
	}
	n, err := testutil.GatherAndCount(reg, "patrol_etcd_errors_total")
	if err != nil || n != 7 {
		t.Errorf("error series = %d (%v), want 7: one per kind seen", n, err)
	}
}

// value returns the value of the series of family name with the given
// label pairs, failing the test when there is none.
func value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func runtimeVersion() string { return runtime.Version() }
