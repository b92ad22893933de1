package workerbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

const (
	execHosts    = 5000
	execParallel = 64
	// targetExecRatio is the Patrol/xargs rate the figure is printed
	// against.
	targetExecRatio = 0.80
)

// BenchmarkExecVsXargs5000 runs /bin/true once per host for 5,000 hosts,
// 64 at a time, two ways in each iteration:
//
//	(a) `xargs -P 64 -n 1 /bin/true` over 5,000 input lines, run before
//	    and after (b), with no Patrol process up; their mean counts;
//	(b) Patrol end to end on an embedded etcd with fsync on: one `patrol
//	    scheduler` and one `patrol worker --concurrency 64 --allow-exec
//	    true=/bin/true` child, a 5,000-host batch with the exec check,
//	    from submit to the summary written;
//
// and prints both rates and the ratio Patrol/xargs, against >= 0.80.
// Figures are medians over the iterations.
//
//	go test -run '^$' -bench ExecVsXargs5000 -benchtime 3x ./internal/workerbench/
func BenchmarkExecVsXargs5000(b *testing.B) {
	skipUnlessLinux(b)
	xargs, err := exec.LookPath("xargs")
	if err != nil {
		b.Skip("no xargs on PATH")
	}
	bin := proctest.Binary(b)
	endpoint, cli := startEtcd(b)
	inv := benchHosts(execHosts)
	var lines strings.Builder
	for _, h := range inv {
		lines.WriteString(h.Name + "\n")
	}

	var runs []execRun
	for i := 0; b.Loop(); i++ {
		runs = append(runs, execOnce(b, bin, xargs, lines.String(), endpoint, cli, fmt.Sprintf("/workerbench-exec-%d", i), inv))
	}

	xr := median(runs, func(r execRun) float64 { return r.xargsRate() })
	pr := median(runs, func(r execRun) float64 { return r.patrolRate() })
	ratio := median(runs, func(r execRun) float64 { return r.ratio() })
	var each []string
	for _, r := range runs {
		each = append(each, fmt.Sprintf("%.0f/%.0f=%.2f", r.patrolRate(), r.xargsRate(), r.ratio()))
	}
	m := medianRun(runs, func(r execRun) float64 { return r.ratio() })
	verdict := "within"
	if ratio < targetExecRatio {
		verdict = "BELOW"
	}
	running := m.done - m.firstClaim
	fmt.Fprintf(os.Stderr, "\nexec /bin/true, %d hosts, %d at a time: xargs %.0f runs/s; Patrol %.0f runs/s (submit to summary); Patrol/xargs %.2f (target >= %.2f: %s)\n"+
		"  median of %d runs (each: patrol/xargs runs/s %s); embedded etcd with fsync on\n"+
		"  median run: xargs %.2fs (mean of the runs before and after Patrol), %.2f CPU-s, other processes %.2f CPU-s\n"+
		"    Patrol: submit %.2fs, sharded %.2fs, first claim %.2fs, summary %.2fs\n"+
		"    first claim to summary: %.2fs = %.0f runs/s; %d claims (%.1f tasks each, one every %.1fms), %.2f etcd revisions/task; etcd request limit went as low as %d (of 8)\n"+
		"    CPU, Patrol: %s\n",
		execHosts, execParallel, xr, pr, ratio, targetExecRatio, verdict,
		len(runs), strings.Join(each, " "),
		m.xargs.Seconds(), m.xargsCPU.Seconds(), m.xargsOther.Seconds(), m.submit.Seconds(), m.sharded.Seconds(), m.firstClaim.Seconds(), m.done.Seconds(),
		running.Seconds(), execHosts/running.Seconds(), m.claims, float64(execHosts)/float64(max(1, m.claims)), m.claimEvery(),
		float64(m.revs)/execHosts, m.minLimit, m.cpu)
	b.ReportMetric(0, "ns/op") // an iteration also starts processes and cleans up: not a figure
	b.ReportMetric(xr, "xargs-runs/s")
	b.ReportMetric(pr, "patrol-runs/s")
	b.ReportMetric(ratio, "patrol/xargs")
}

// execRun is one iteration's figures.
type execRun struct {
	batchRun
	xargs      time.Duration // mean of the runs before and after Patrol
	xargsCPU   time.Duration // CPU xargs and its /bin/true runs used (mean)
	xargsOther time.Duration // CPU other processes used meanwhile (mean)
	minLimit   int
	cpu        cpuUse
}

func (r execRun) xargsRate() float64  { return execHosts / r.xargs.Seconds() }
func (r execRun) patrolRate() float64 { return execHosts / r.done.Seconds() }
func (r execRun) ratio() float64      { return r.patrolRate() / r.xargsRate() }

func execOnce(b *testing.B, bin, xargs, lines, endpoint string, cli *clientv3.Client, prefix string, inv []inventory.Host) execRun {
	var run execRun
	// xargs runs while no Patrol process does, before and after Patrol:
	// their mean is what Patrol is compared with, so that load that comes
	// or goes on a shared machine weighs on both sides alike.
	before := runXargs(b, xargs, lines)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startCluster(b, bin, endpoint, cli, prefix, "--concurrency", strconv.Itoa(execParallel), "--allow-exec", "true=/bin/true")
	defer c.stop(b)
	q := queue.New(cli, prefix)
	cpu := c.cpuMark(b)
	r, err := runBatch(ctx, cli, q, queue.SubmitRequest{ID: "exec5k", Check: "exec", Params: map[string]string{"name": "true"}, Hosts: inv})
	if err != nil {
		b.Fatal(err) // the children's cleanups print their logs
	}
	run.batchRun, run.cpu, run.minLimit = r, cpu(), c.minRequestLimit()
	c.stop(b)

	after := runXargs(b, xargs, lines)
	run.xargs = (before.wall + after.wall) / 2
	run.xargsCPU = (before.cpu + after.cpu) / 2
	run.xargsOther = (before.other + after.other) / 2
	return run
}

// xargsRun is one xargs run: its wall time, the CPU it and its /bin/true
// runs used, and the CPU other processes on the machine used meanwhile.
type xargsRun struct{ wall, cpu, other time.Duration }

func runXargs(b *testing.B, xargs, lines string) xargsRun {
	cmd := exec.Command(xargs, "-P", strconv.Itoa(execParallel), "-n", "1", "/bin/true")
	cmd.Stdin = strings.NewReader(lines)
	cpu0, busy0, self0 := childrenCPU(), machineBusy(), selfCPU()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("xargs: %v: %s", err, out)
	}
	r := xargsRun{wall: time.Since(start), cpu: childrenCPU() - cpu0}
	r.other = max(0, machineBusy()-busy0-r.cpu-(selfCPU()-self0))
	return r
}
