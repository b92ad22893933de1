//go:build linux

package clusterfault

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/proctest"
)

// The NOSPACE scenario's cluster quota and the size of each batch that
// fills it.
const (
	nospaceQuota = 16 << 20
	fillHosts    = 20000
)

// runNOSPACE fills a cluster whose quota is 16 MiB with batches until etcd
// raises its NOSPACE alarm and refuses a submit, and checks what holds
// today: the alarm is raised, the refused batch has no spec (a batch is
// there whole or not at all), and no result was written twice. What
// Patrol tells the operator (the refusal, cancel, status) is reported,
// not asserted. It returns the report's NOSPACE line.
func runNOSPACE(t *testing.T) string {
	h := setup(t, clusterConfig{quota: nospaceQuota})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now()

	var accepted []string
	var refused *proctest.Proc
	var refusedBatch string
	for i := 1; refused == nil; i++ {
		if i > 20 {
			t.Fatalf("%d batches of %d hosts accepted, and no NOSPACE alarm: is the %d MiB quota applied?", i-1, fillHosts, nospaceQuota>>20)
		}
		batch := fmt.Sprintf("fill-%d", i)
		path, _ := inventory(t, batch, fillHosts)
		p := h.run(2*time.Minute, "submit", "-i", path, "--check", "noop", "--param", "sleep="+batchSleep,
			"--batch-id", batch, "--timeout", attemptTimeout, "-o", "json")
		if err := p.Wait(t, time.Second); err != nil {
			refused, refusedBatch = p, batch
			continue
		}
		accepted = append(accepted, batch)
	}
	filled := time.Since(began)

	alarms, err := h.c.cli.AlarmList(ctx)
	if err != nil {
		t.Fatalf("list etcd's alarms: %v", err)
	}
	nospace := 0
	for _, a := range alarms.Alarms {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			nospace++
		}
	}
	if nospace == 0 {
		t.Errorf("submit of %s refused (%s), but etcd raised no NOSPACE alarm: %v", refusedBatch, lastLine(refused), alarms.Alarms)
	}
	spec, err := h.c.cli.Get(ctx, h.keys.BatchSpec(refusedBatch), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("read the refused batch's spec: %v", err)
	}
	if spec.Count != 0 {
		t.Errorf("the refused submit of %s wrote its spec", refusedBatch)
	}
	results := 0
	for _, batch := range accepted {
		resp, err := h.c.cli.Get(ctx, h.keys.BatchResults(batch), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatalf("read the results of %s: %v", batch, err)
		}
		for _, kv := range resp.Kvs {
			if kv.Version != 1 {
				t.Errorf("%s written %d times, want once", kv.Key, kv.Version)
			}
		}
		results += len(resp.Kvs)
	}

	var db int64
	if st, err := h.c.cli.Status(ctx, h.c.members[0].client); err == nil {
		db = st.DbSize
	}
	line := fmt.Sprintf("alarm after %d batches of %d hosts accepted (%s; db %.1f MiB, quota %d MiB; %d results in); "+
		"submit of %s refused, exit %d: %q",
		len(accepted), fillHosts, round(filled), float64(db)/(1<<20), nospaceQuota>>20, results,
		refusedBatch, proctest.ExitCode(refused.Wait(t, time.Second)), lastLine(refused))

	// What an operator meets under the alarm today, reported as it is.
	victim := accepted[0]
	st := h.run(time.Minute, "status", victim, "-o", "json")
	var status struct{ State string }
	if json.Unmarshal(st.Stdout(), &status) == nil && status.State != "" {
		line += fmt.Sprintf("; status %s: %s", victim, status.State)
	} else {
		line += fmt.Sprintf("; status %s: exit %d: %q", victim, proctest.ExitCode(st.Wait(t, time.Second)), lastLine(st))
	}
	cn := h.run(time.Minute, "cancel", victim)
	line += fmt.Sprintf("; cancel %s: exit %d: %q", victim, proctest.ExitCode(cn.Wait(t, time.Second)), lastLine(cn))
	if exited := h.exited(); len(exited) > 0 {
		line += fmt.Sprintf("; exited: %s", strings.Join(exited, ", "))
	}

	// Recovery. The place for issue 12's recovery steps, which land with
	// the code that makes them work (cancel and deleting a batch under the
	// alarm): cancel or delete the filling batches, compact, defragment
	// every member, disarm the alarm, then submit a batch, wait for its
	// summary and h.checkInvariants over it. Today cancel fails under the
	// alarm (reported above) and the filling batches are the data, so
	// nothing here recovers yet.

	t.Log(line)
	return line
}

// lastLine is the last line a process wrote to stderr.
func lastLine(p *proctest.Proc) string {
	lines := p.Stderr()
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}
