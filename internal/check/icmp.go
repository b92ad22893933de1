package check

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// icmpCheck sends ICMP echo requests (ping) to the host and judges how
// many came back and how fast.
//
// Params:
//
//	count      echo requests to send, 1-100; default 3
//	interval   between requests, 10ms-10s; default 200ms
//	timeout    duration for the whole check; replies not in by then are
//	           lost; default 3s; must grow with count x interval: at least
//	           (count-1) x interval + 1s, a second for the last reply; and
//	           shorter than the job's --timeout, which otherwise ends the
//	           run first, an error
//	warn_loss  warn when at least this share of requests got no reply, a
//	           percentage 1-100 (20 or 20%); default 20
//	fail_loss  fail when at least this share was lost; default 100 (no
//	           reply at all); at least warn_loss
//	warn_rtt   warn when the average round trip is at least this duration;
//	           default none
//	fail_rtt   fail when it is at least this duration; default none; at
//	           least warn_rtt
//
// The host's address is resolved and its first IPv4 address pinged (its
// IPv6 one when it has no IPv4). The worker opens an unprivileged ICMP
// socket where the kernel allows it (Linux: the worker's group is within
// sysctl net.ipv4.ping_group_range, which governs IPv6 too), and a raw
// socket, which needs CAP_NET_RAW, otherwise; when neither is allowed
// the check is an error saying what to change. Each run uses its own
// socket; replies are matched by identifier, sequence and a random token.
//
// ok: loss and round trip under the warn thresholds. warn: at or above a
// warn threshold. fail: at or above a fail threshold (by default, no reply
// at all). error: the address does not resolve, no ICMP socket can be
// opened, cancellation, the job's --timeout ending the run before the
// check's own timeout (replies missing then are no verdict). Loss is over
// the requests sent.
//
// Details: "address", "sent", "received", "loss_pct", "rtt_min_ms",
// "rtt_avg_ms", "rtt_max_ms" (when any reply came), "socket"
// (unprivileged or raw).
type icmpCheck struct {
	count              int
	interval, timeout  time.Duration
	warnLoss, failLoss float64 // percent
	warnRTT, failRTT   time.Duration
	modes              []string // socket modes to try, in order; nil: unprivileged, then raw
}

func newICMP(p params, _ Options) (Check, error) {
	count, err := p.int("count", 3, 1, 100, "a number of echo requests 1-100, e.g. 3")
	if err != nil {
		return nil, err
	}
	interval, err := p.duration("interval", 200*time.Millisecond, false)
	if err != nil {
		return nil, err
	}
	if interval < 10*time.Millisecond || interval > 10*time.Second {
		return nil, p.bad("interval", "a duration 10ms-10s, e.g. 200ms")
	}
	timeout, err := p.duration("timeout", 3*time.Second, false)
	if err != nil {
		return nil, err
	}
	if need := time.Duration(count-1)*interval + time.Second; timeout < need {
		return nil, fmt.Errorf("%w: icmp count=%d at interval=%s needs a timeout of at least %s, not %s (the last request needs a second for its reply): pass --param timeout=%s, or lower count or interval",
			ErrBadParam, count, interval, need, timeout, need)
	}
	c := &icmpCheck{count: count, interval: interval, timeout: timeout}
	if c.warnLoss, err = p.percent("warn_loss", 20); err != nil {
		return nil, err
	}
	if c.failLoss, err = p.percent("fail_loss", 100); err != nil {
		return nil, err
	}
	if c.warnLoss > c.failLoss {
		return nil, p.bad("warn_loss", fmt.Sprintf("at most fail_loss (%g%%): a host warns before it fails", c.failLoss))
	}
	if c.warnRTT, err = p.duration("warn_rtt", 0, false); err != nil {
		return nil, err
	}
	if c.failRTT, err = p.duration("fail_rtt", 0, false); err != nil {
		return nil, err
	}
	if c.warnRTT > 0 && c.failRTT > 0 && c.warnRTT > c.failRTT {
		return nil, p.bad("warn_rtt", fmt.Sprintf("at most fail_rtt (%s): a host warns before it fails", c.failRTT))
	}
	return c, nil
}

// percent reads a percentage in (0, 100], written 20 or 20%.
func (p params) percent(name string, def float64) (float64, error) {
	v, ok := p.m[name]
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil || f <= 0 || f > 100 || math.IsNaN(f) {
		return 0, p.bad(name, "a percentage of requests 1-100, e.g. 20 or 20%")
	}
	return f, nil
}

// icmpSocket is an open ICMP socket and how to address and read it.
type icmpSocket struct {
	conn  *icmp.PacketConn
	mode  string // "unprivileged" or "raw"
	proto int    // 1 for ICMPv4, 58 for ICMPv6
	v6    bool
}

// listenICMP opens an ICMP socket of the first of modes the kernel
// allows: "unprivileged", "raw", or by default the one, then the other.
func listenICMP(v6 bool, modes []string) (*icmpSocket, error) {
	type way struct{ network, addr, mode string }
	ways := []way{{"udp4", "0.0.0.0", "unprivileged"}, {"ip4:icmp", "0.0.0.0", "raw"}}
	proto := 1
	if v6 {
		ways = []way{{"udp6", "::", "unprivileged"}, {"ip6:ipv6-icmp", "::", "raw"}}
		proto = 58
	}
	var why []string
	for _, w := range ways {
		if modes != nil && !slices.Contains(modes, w.mode) {
			continue
		}
		conn, err := icmp.ListenPacket(w.network, w.addr)
		if err == nil {
			return &icmpSocket{conn: conn, mode: w.mode, proto: proto, v6: v6}, nil
		}
		why = append(why, w.mode+": "+innermost(err))
	}
	return nil, fmt.Errorf("cannot open an ICMP socket (%s): allow unprivileged ping for the worker's group with sysctl net.ipv4.ping_group_range (e.g. \"0 2147483647\"), or give the worker CAP_NET_RAW",
		strings.Join(why, "; "))
}

// to is the address to send an echo to.
func (s *icmpSocket) to(ip net.IP) net.Addr {
	if s.mode == "unprivileged" {
		return &net.UDPAddr{IP: ip}
	}
	return &net.IPAddr{IP: ip}
}

// resolveICMP returns the address to ping: the host's first IPv4 address,
// else its first IPv6 one.
func resolveICMP(ctx context.Context, address string) (net.IP, error) {
	if ip := net.ParseIP(address); ip != nil {
		return ip, nil
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, address)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP, nil
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", address)
	}
	return addrs[0].IP, nil
}

func (c *icmpCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ip, err := resolveICMP(runCtx, h.Address)
	if err != nil {
		status, why := outcome(ctx, err, start)
		return result(start, status, "icmp %s: %s", h.Address, why)
	}
	sock, err := listenICMP(ip.To4() == nil, c.modes)
	if err != nil {
		return result(start, StatusError, "icmp %s: %v", ip, err)
	}
	defer sock.conn.Close()
	// Closing the socket ends a read blocked on it when ctx is cancelled.
	stop := context.AfterFunc(runCtx, func() { sock.conn.Close() })
	defer stop()

	rtts, sent, err := c.ping(runCtx, sock, ip, start)
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return result(start, StatusError, "icmp %s: cancelled", ip)
	case ended(ctx):
		// The job's --timeout ended the run before the check's own
		// timeout did: what came back so far is no verdict.
		return result(start, StatusError, "icmp %s: timed out after %s, the job's --timeout, before the check's timeout=%s ended (%d of %d requests sent, %d replies): pass a --timeout longer than the check's timeout",
			ip, time.Since(start).Round(time.Millisecond), c.timeout, sent, c.count, replies(rtts))
	case err != nil:
		return result(start, StatusError, "icmp %s: %s", ip, innermost(err))
	}
	return c.judge(start, ip, sock.mode, rtts[:sent])
}

// ended reports whether ctx is done or its deadline has passed: a read
// deadline set to ctx's deadline can fire before ctx's own timer has
// marked it done.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// replies counts the round trips measured.
func replies(rtts []time.Duration) int {
	n := 0
	for _, d := range rtts {
		if d >= 0 {
			n++
		}
	}
	return n
}

// ping sends count echo requests, interval apart, and reads replies until
// every one is in or ctx ends. rtts holds a round trip per reply, by
// sequence, -1 for none; sent is how many requests went out, the first
// sent of rtts.
func (c *icmpCheck) ping(ctx context.Context, sock *icmpSocket, ip net.IP, start time.Time) (rtts []time.Duration, sent int, err error) {
	var token [8]byte
	rand.Read(token[:])
	id := int(binary.BigEndian.Uint16(token[:2])) // the kernel replaces it on an unprivileged socket
	sentAt := make([]time.Time, c.count)
	rtts = make([]time.Duration, c.count)
	for i := range rtts {
		rtts[i] = -1
	}
	var echoType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if sock.v6 {
		echoType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	got := 0
	buf := make([]byte, 1500)
	// readUntil reads replies until deadline, every reply is in, or ctx ends.
	readUntil := func(deadline time.Time) error {
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		for got < c.count && ctx.Err() == nil {
			sock.conn.SetReadDeadline(deadline)
			n, peer, err := sock.conn.ReadFrom(buf)
			now := time.Now()
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				return nil
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil // closed by the cancellation
				}
				return err
			}
			m, err := icmp.ParseMessage(sock.proto, buf[:n])
			if err != nil || m.Type != replyType || !sameIP(peer, ip) {
				continue
			}
			echo, ok := m.Body.(*icmp.Echo)
			if !ok || !bytes.Equal(echo.Data, token[:]) || sock.mode == "raw" && echo.ID != id {
				continue
			}
			if seq := echo.Seq; seq >= 0 && seq < c.count && !sentAt[seq].IsZero() && rtts[seq] < 0 {
				rtts[seq] = now.Sub(sentAt[seq])
				got++
			}
		}
		return nil
	}
	for seq := range c.count {
		if err := readUntil(start.Add(time.Duration(seq) * c.interval)); err != nil || ended(ctx) {
			return rtts, sent, err
		}
		msg := icmp.Message{Type: echoType, Body: &icmp.Echo{ID: id, Seq: seq, Data: token[:]}}
		b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
		if err != nil {
			return rtts, sent, err
		}
		sentAt[seq] = time.Now()
		if _, err := sock.conn.WriteTo(b, sock.to(ip)); err != nil {
			if ctx.Err() != nil {
				return rtts, sent, nil
			}
			return rtts, sent, fmt.Errorf("send echo request: %w", err)
		}
		sent++
	}
	return rtts, sent, readUntil(time.Now().Add(c.timeout)) // ctx's deadline comes first
}

// sameIP reports whether a reply came from ip.
func sameIP(peer net.Addr, ip net.IP) bool {
	switch a := peer.(type) {
	case *net.UDPAddr:
		return a.IP.Equal(ip)
	case *net.IPAddr:
		return a.IP.Equal(ip)
	}
	return false
}

// judge turns the round trips of the requests sent, -1 for no reply,
// into a Result. Loss is over the requests sent, which are all count of
// them unless sending failed.
func (c *icmpCheck) judge(start time.Time, ip net.IP, mode string, rtts []time.Duration) Result {
	sent := len(rtts)
	if sent == 0 {
		return result(start, StatusError, "icmp %s: no echo request was sent", ip)
	}
	var (
		got           int
		sum           time.Duration
		minRTT, maxRT time.Duration
	)
	for _, d := range rtts {
		if d < 0 {
			continue
		}
		if got == 0 || d < minRTT {
			minRTT = d
		}
		maxRT = max(maxRT, d)
		sum += d
		got++
	}
	loss := 100 * float64(sent-got) / float64(sent)
	details := map[string]string{
		"address": ip.String(), "sent": strconv.Itoa(sent), "received": strconv.Itoa(got),
		"loss_pct": strconv.FormatFloat(loss, 'f', -1, 64), "socket": mode,
	}
	what := fmt.Sprintf("icmp %s: %d/%d replies (%s%% lost)", ip, got, sent, strconv.FormatFloat(loss, 'f', 0, 64))
	var avg time.Duration
	if got > 0 {
		avg = sum / time.Duration(got)
		details["rtt_min_ms"], details["rtt_avg_ms"], details["rtt_max_ms"] = millis(minRTT), millis(avg), millis(maxRT)
		what += fmt.Sprintf(", rtt min/avg/max %s/%s/%s ms", millis(minRTT), millis(avg), millis(maxRT))
	}
	var res Result
	switch {
	case loss >= c.failLoss:
		res = result(start, StatusFail, "%s: at least fail_loss=%g%%", what, c.failLoss)
	case c.failRTT > 0 && avg >= c.failRTT:
		res = result(start, StatusFail, "%s: average at least fail_rtt=%s", what, c.failRTT)
	case loss >= c.warnLoss:
		res = result(start, StatusWarn, "%s: at least warn_loss=%g%%", what, c.warnLoss)
	case c.warnRTT > 0 && avg >= c.warnRTT:
		res = result(start, StatusWarn, "%s: average at least warn_rtt=%s", what, c.warnRTT)
	default:
		res = result(start, StatusOK, "%s", what)
	}
	res.Details = details
	return res
}
