package check

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// BenchmarkExecVsXargs is the exec check's inner loop against the floor a
// shell user would reach for: /bin/true run once per host for 5,000 hosts,
// 64 at a time, through the check (no etcd, no queue) and through
// `xargs -P 64 -n 1 /bin/true`, in the same run. It reports both rates and
// their ratio; the ns/op is one round of both.
//
//	go test -run '^$' -bench ExecVsXargs -benchtime 3x ./internal/check
func BenchmarkExecVsXargs(b *testing.B) {
	skipUnlessLinux(b)
	const hosts, parallel = 5000, 64
	c, err := NewWith("exec", map[string]string{"name": "true", "args": "{{.Host}}"},
		Options{Exec: map[string][]string{"true": {"/bin/true"}}})
	if err != nil {
		b.Fatal(err)
	}
	hs := make([]inventory.Host, hosts)
	var lines strings.Builder
	for i := range hs {
		hs[i] = inventory.Host{Name: "host" + strconv.Itoa(i), Address: "10.0.0.1", Vars: map[string]string{"zone": "dc1"}}
		lines.WriteString(hs[i].Name + "\n")
	}

	var patrol, xargs time.Duration
	rounds := 0
	for b.Loop() {
		start := time.Now()
		next := make(chan inventory.Host)
		var wg sync.WaitGroup
		var notOK atomic.Int64
		for range parallel {
			wg.Go(func() {
				for h := range next {
					if res := c.Run(context.Background(), h); res.Status != StatusOK {
						if notOK.Add(1) == 1 {
							b.Errorf("%s: %s %s", h.Name, res.Status, res.Message)
						}
					}
				}
			})
		}
		for _, h := range hs {
			next <- h
		}
		close(next)
		wg.Wait()
		patrol += time.Since(start)

		start = time.Now()
		cmd := exec.Command("xargs", "-P", strconv.Itoa(parallel), "-n", "1", "/bin/true")
		cmd.Stdin = strings.NewReader(lines.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("xargs: %v: %s", err, out)
		}
		xargs += time.Since(start)
		rounds++
	}
	patrolRate := float64(rounds*hosts) / patrol.Seconds()
	xargsRate := float64(rounds*hosts) / xargs.Seconds()
	b.ReportMetric(patrolRate, "patrol-runs/s")
	b.ReportMetric(xargsRate, "xargs-runs/s")
	b.ReportMetric(patrolRate/xargsRate, "patrol/xargs")
	b.Logf("%d rounds of %d hosts, %d at a time: patrol exec %.0f runs/s, xargs %.0f runs/s, ratio %.2f",
		rounds, hosts, parallel, patrolRate, xargsRate, patrolRate/xargsRate)
}
