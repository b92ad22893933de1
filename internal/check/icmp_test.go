package check

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// runICMP runs an icmp check over the socket modes given (nil: the
// check's own choice) and skips the test, saying why, when the kernel
// refuses every one of them.
func runICMP(t *testing.T, ctx context.Context, params map[string]string, modes []string, h inventory.Host) Result {
	t.Helper()
	c := mustNew(t, "icmp", params).(*icmpCheck)
	c.modes = modes
	res := c.Run(ctx, h)
	if res.Status == StatusError && strings.Contains(res.Message, "cannot open an ICMP socket") {
		t.Skipf("SKIP icmp (%v sockets): the kernel refuses them here, so ping cannot be tested: %s", modeNames(modes), res.Message)
	}
	return res
}

func modeNames(modes []string) string {
	if modes == nil {
		return "unprivileged or raw"
	}
	return strings.Join(modes, ", ")
}

func TestICMPLoopback(t *testing.T) {
	lo := inventory.Host{Name: "localhost", Address: "127.0.0.1"}
	for _, modes := range [][]string{nil, {"unprivileged"}, {"raw"}} {
		t.Run(modeNames(modes), func(t *testing.T) {
			res := runICMP(t, context.Background(), map[string]string{"count": "3", "interval": "10ms"}, modes, lo)
			expect(t, res, StatusOK, "icmp 127.0.0.1: 3/3 replies (0% lost), rtt min/avg/max ")
			want := map[string]string{"address": "127.0.0.1", "sent": "3", "received": "3", "loss_pct": "0"}
			for k, v := range want {
				if res.Details[k] != v {
					t.Errorf("Details[%q] = %q, want %q", k, res.Details[k], v)
				}
			}
			if modes != nil && res.Details["socket"] != modes[0] {
				t.Errorf("socket %q, want %q", res.Details["socket"], modes[0])
			}
			t.Logf("pinged 127.0.0.1, socket %s: %s", res.Details["socket"], res.Message)
		})
	}
	t.Run("a name resolves", func(t *testing.T) {
		res := runICMP(t, context.Background(), map[string]string{"count": "1"}, nil, inventory.Host{Name: "localhost", Address: "localhost"})
		if res.Status != StatusOK || res.Details["received"] != "1" {
			t.Errorf("Result = %s %q", res.Status, res.Message)
		}
	})
	t.Run("rtt thresholds", func(t *testing.T) {
		// Every round trip takes at least a nanosecond.
		res := runICMP(t, context.Background(), map[string]string{"count": "2", "interval": "10ms", "warn_rtt": "1ns"}, nil, lo)
		expect(t, res, StatusWarn, "icmp 127.0.0.1: 2/2 replies (0% lost), rtt min/avg/max ")
		if !strings.HasSuffix(res.Message, ": average at least warn_rtt=1ns") {
			t.Errorf("message %q", res.Message)
		}
		res = runICMP(t, context.Background(), map[string]string{"count": "2", "interval": "10ms", "warn_rtt": "1ns", "fail_rtt": "1ns"}, nil, lo)
		expect(t, res, StatusFail, "icmp 127.0.0.1: 2/2 replies")
		res = runICMP(t, context.Background(), map[string]string{"count": "1", "warn_rtt": "1h", "fail_rtt": "2h"}, nil, lo)
		expect(t, res, StatusOK, "icmp 127.0.0.1: 1/1 replies")
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := runICMP(t, ctx, map[string]string{"count": "100", "interval": "1s", "timeout": "2m"}, nil, lo)
		expect(t, res, StatusError, "icmp ")
	})
	t.Run("IPv6", func(t *testing.T) {
		skipWithoutIPv6(t)
		res := runICMP(t, context.Background(), map[string]string{"count": "2", "interval": "10ms"}, nil, inventory.Host{Name: "::1", Address: "::1"})
		expect(t, res, StatusOK, "icmp ::1: 2/2 replies (0% lost)")
	})
}

// TestICMPJudge: the thresholds, over round trips as a run measures them
// (loss cannot be made on loopback without changing the machine).
func TestICMPJudge(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		params  map[string]string
		rtts    []time.Duration
		status  Status
		message string
	}{
		{nil, []time.Duration{ms, 2 * ms, 3 * ms}, StatusOK, "icmp 192.0.2.1: 3/3 replies (0% lost), rtt min/avg/max 1.000/2.000/3.000 ms"},
		{nil, []time.Duration{ms, -1, 3 * ms}, StatusWarn, "icmp 192.0.2.1: 2/3 replies (33% lost), rtt min/avg/max 1.000/2.000/3.000 ms: at least warn_loss=20%"},
		{nil, []time.Duration{-1, -1, -1}, StatusFail, "icmp 192.0.2.1: 0/3 replies (100% lost): at least fail_loss=100%"},
		{map[string]string{"fail_loss": "50%"}, []time.Duration{ms, -1, -1}, StatusFail, "icmp 192.0.2.1: 1/3 replies (67% lost), rtt min/avg/max 1.000/1.000/1.000 ms: at least fail_loss=50%"},
		{map[string]string{"warn_loss": "50"}, []time.Duration{ms, -1, ms}, StatusOK, "icmp 192.0.2.1: 2/3 replies (33% lost)"},
		{map[string]string{"warn_rtt": "3ms", "fail_rtt": "10ms"}, []time.Duration{ms, 3 * ms, 3 * ms}, StatusOK, "icmp 192.0.2.1: 3/3"},
		{map[string]string{"warn_rtt": "2ms", "fail_rtt": "10ms"}, []time.Duration{ms, 3 * ms, 5 * ms}, StatusWarn, "icmp 192.0.2.1: 3/3 replies (0% lost), rtt min/avg/max 1.000/3.000/5.000 ms: average at least warn_rtt=2ms"},
		{map[string]string{"warn_rtt": "2ms", "fail_rtt": "10ms"}, []time.Duration{20 * ms, 10 * ms, 30 * ms}, StatusFail, "icmp 192.0.2.1: 3/3 replies (0% lost), rtt min/avg/max 10.000/20.000/30.000 ms: average at least fail_rtt=10ms"},
	}
	for _, tt := range tests {
		c := mustNew(t, "icmp", tt.params).(*icmpCheck)
		c.count = len(tt.rtts)
		res := c.judge(time.Now().Add(-time.Millisecond), net.ParseIP("192.0.2.1"), "raw", tt.rtts)
		expect(t, res, tt.status, tt.message)
	}
}

// TestICMPJobTimeoutShorter: when the job's --timeout (the context's
// deadline) ends the run before the check's own timeout, the requests
// never sent are not lost replies: the result is an error, a timeout.
func TestICMPJobTimeoutShorter(t *testing.T) {
	lo := inventory.Host{Name: "localhost", Address: "127.0.0.1"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// Requests at 0s, 1s, 2s: only the first goes out before the deadline.
	res := runICMP(t, ctx, map[string]string{"count": "3", "interval": "1s", "timeout": "5s"}, nil, lo)
	expect(t, res, StatusError, "icmp 127.0.0.1: timed out after ")
	if !strings.Contains(res.Message, "the job's --timeout, before the check's timeout=5s ended (1 of 3 requests sent, 1 replies)") {
		t.Errorf("message %q does not say the job's timeout ended it", res.Message)
	}
}

// TestICMPJudgeSent: loss is over the requests sent.
func TestICMPJudgeSent(t *testing.T) {
	c := mustNew(t, "icmp", map[string]string{"count": "4"}).(*icmpCheck)
	res := c.judge(time.Now(), net.ParseIP("192.0.2.1"), "raw", []time.Duration{time.Millisecond, time.Millisecond})
	expect(t, res, StatusOK, "icmp 192.0.2.1: 2/2 replies (0% lost)")
	if res.Details["sent"] != "2" {
		t.Errorf("sent %q, want 2", res.Details["sent"])
	}
}
