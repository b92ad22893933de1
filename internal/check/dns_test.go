package check

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// dnsServer is a real DNS server on loopback, UDP and TCP on one port,
// answering from a small zone:
//
//	ok.test          A 192.0.2.1 and 192.0.2.2, AAAA 2001:db8::1,
//	                 MX 10 mail.ok.test, TXT "v=spf1 -all"
//	www.ok.test      CNAME ok.test (and, asked for A, the chain)
//	_sip._tcp.ok.test SRV 10 5 5060 sip.ok.test
//	big.test         40 TXT records: truncated over UDP
//	missing.test     NXDOMAIN
//	broken.test      SERVFAIL
//	refused.test     REFUSED
//	slow.test        no answer at all
type dnsServer struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // network -> queries
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	s := &dnsServer{seen: map[string]int{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("cannot listen on TCP at the DNS server's UDP port: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	handler := dns.HandlerFunc(s.serve)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the Shutdowns below: cleanups run last first
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { srv.ActivateAndServe() })
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

func (s *dnsServer) serve(w dns.ResponseWriter, q *dns.Msg) {
	udp := w.RemoteAddr().Network() == "udp"
	s.mu.Lock()
	s.seen[w.RemoteAddr().Network()]++
	s.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(q)
	name, qtype := strings.ToLower(q.Question[0].Name), q.Question[0].Qtype
	rr := func(text string) {
		r, err := dns.NewRR(text)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, r)
	}
	switch {
	case name == "slow.test.":
		return // no reply: the client times out
	case name == "missing.test.":
		m.Rcode = dns.RcodeNameError
	case name == "broken.test.":
		m.Rcode = dns.RcodeServerFailure
	case name == "refused.test.":
		m.Rcode = dns.RcodeRefused
	case name == "ok.test." && qtype == dns.TypeA:
		rr("ok.test. 300 IN A 192.0.2.1")
		rr("ok.test. 60 IN A 192.0.2.2")
	case name == "ok.test." && qtype == dns.TypeAAAA:
		rr("ok.test. 300 IN AAAA 2001:db8::1")
	case name == "ok.test." && qtype == dns.TypeMX:
		rr("ok.test. 300 IN MX 10 mail.ok.test.")
	case name == "ok.test." && qtype == dns.TypeTXT:
		rr(`ok.test. 300 IN TXT "v=spf1" " -all"`)
	case name == "www.ok.test.":
		rr("www.ok.test. 300 IN CNAME ok.test.")
		if qtype == dns.TypeA {
			rr("ok.test. 300 IN A 192.0.2.1")
		}
	case name == "_sip._tcp.ok.test." && qtype == dns.TypeSRV:
		rr("_sip._tcp.ok.test. 300 IN SRV 10 5 5060 sip.ok.test.")
	case name == "big.test." && qtype == dns.TypeTXT:
		for i := range 40 {
			rr("big.test. 300 IN TXT \"record number " + strconv.Itoa(i) + " of a long list of them\"")
		}
	case name == "ok.test." || name == "big.test.":
		// NOERROR, no record of the type: NODATA
	default:
		m.Rcode = dns.RcodeNameError
	}
	if udp {
		m.Truncate(dns.MinMsgSize)
	}
	w.WriteMsg(m)
}

func (s *dnsServer) queries(network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[network]
}

func TestDNS(t *testing.T) {
	s := startDNS(t)
	h := inventory.Host{Name: "ok.test", Address: "ok.test"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"server": s.addr}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		params  map[string]string
		status  Status
		message string
		details map[string]string
	}{
		{"A, the host's address as the name", with(), StatusOK, "dns A ok.test: 192.0.2.1, 192.0.2.2 from " + s.addr + " in ",
			map[string]string{"answers": "192.0.2.1,192.0.2.2", "rcode": "NOERROR", "server": s.addr, "ttl": "60"}},
		{"AAAA", with("type", "aaaa"), StatusOK, "dns AAAA ok.test: 2001:db8::1", map[string]string{"answers": "2001:db8::1"}},
		{"MX", with("type", "MX"), StatusOK, "dns MX ok.test: 10 mail.ok.test", map[string]string{"answers": "10 mail.ok.test"}},
		{"TXT", with("type", "TXT"), StatusOK, "dns TXT ok.test: v=spf1 -all", nil},
		{"CNAME", with("type", "CNAME", "name", "www.ok.test"), StatusOK, "dns CNAME www.ok.test: ok.test", nil},
		{"A through a CNAME", with("name", "www.ok.test"), StatusOK, "dns A www.ok.test: 192.0.2.1", map[string]string{"answers": "192.0.2.1"}},
		{"SRV", with("type", "SRV", "name", "_sip._tcp.{{.Address}}"), StatusOK, "dns SRV _sip._tcp.ok.test: 10 5 5060 sip.ok.test", nil},
		{"expect: the exact set, any order", with("expect", "192.0.2.2, 192.0.2.1"), StatusOK, "dns A ok.test: ", nil},
		{"expect: names without case or dot", with("type", "MX", "expect", "10 MAIL.ok.test."), StatusOK, "dns MX ok.test: ", nil},
		{"expect: a subset is not the set", with("expect", "192.0.2.1"), StatusFail,
			"dns A ok.test: answers 192.0.2.1, 192.0.2.2, want 192.0.2.1", nil},
		{"expect: a regexp some answer matches", with("expect", `/^192\.0\.2\.2$/`), StatusOK, "dns A ok.test: ", nil},
		{"expect: a regexp no answer matches", with("type", "TXT", "expect", "/^v=DMARC1/"), StatusFail,
			"dns TXT ok.test: no answer matches /^v=DMARC1/: v=spf1 -all", nil},
		{"NODATA", with("type", "SRV"), StatusFail, "dns SRV ok.test: no SRV record (NODATA) from " + s.addr, map[string]string{"rcode": "NOERROR"}},
		{"NXDOMAIN", with("name", "missing.test"), StatusFail, "dns A missing.test: NXDOMAIN from " + s.addr + ": no such name",
			map[string]string{"rcode": "NXDOMAIN"}},
		{"SERVFAIL", with("name", "broken.test"), StatusError, "dns A broken.test: SERVFAIL from " + s.addr, nil},
		{"REFUSED", with("name", "refused.test"), StatusError, "dns A refused.test: REFUSED from " + s.addr, nil},
		{"timeout", with("name", "slow.test", "timeout", "300ms"), StatusError, "dns A slow.test: no answer: " + s.addr + ": timed out", nil},
		{"server as a template", map[string]string{"server": "{{.Vars.ns}}"}, StatusOK, "dns A ok.test: 192.0.2.1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := h
			host.Vars = map[string]string{"ns": s.addr}
			res := mustNew(t, "dns", tt.params).Run(context.Background(), host)
			expect(t, res, tt.status, tt.message)
			for k, v := range tt.details {
				if res.Details[k] != v {
					t.Errorf("Details[%q] = %q, want %q", k, res.Details[k], v)
				}
			}
		})
	}

	t.Run("truncated over UDP, asked again over TCP", func(t *testing.T) {
		before := s.queries("tcp")
		res := mustNew(t, "dns", with("type", "TXT", "name", "big.test")).Run(context.Background(), h)
		expect(t, res, StatusOK, "dns TXT big.test: record number 0 of a long list of them, ")
		if n := strings.Count(res.Details["answers"], "record number"); n != 40 {
			t.Errorf("%d answers, want 40", n)
		}
		if s.queries("tcp") != before+1 {
			t.Errorf("TCP queries %d, want %d", s.queries("tcp"), before+1)
		}
	})

	t.Run("system resolver: the next nameserver answers", func(t *testing.T) {
		c := mustNew(t, "dns", nil).(*dnsCheck)
		dead := closedUDPPort(t)
		c.system = func() ([]string, error) { return []string{dead, s.addr}, nil }
		res := c.Run(context.Background(), h)
		expect(t, res, StatusOK, "dns A ok.test: 192.0.2.1, 192.0.2.2 from "+s.addr)
	})

	t.Run("system resolver: every nameserver fails", func(t *testing.T) {
		c := mustNew(t, "dns", map[string]string{"name": "broken.test"}).(*dnsCheck)
		dead := closedUDPPort(t)
		c.system = func() ([]string, error) { return []string{s.addr, dead}, nil }
		res := c.Run(context.Background(), h)
		expect(t, res, StatusError, "dns A broken.test: no answer: "+s.addr+": SERVFAIL; "+dead+": connection refused")
		if strings.Contains(res.Message, "timed out") {
			t.Errorf("message %q: an unreachable server is refused, not timed out", res.Message)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		c := mustNew(t, "dns", with("name", "slow.test", "timeout", "1h"))
		done := make(chan Result)
		go func() { done <- c.Run(ctx, h) }()
		cancel()
		expect(t, <-done, StatusError, "dns A slow.test: ")
	})
}

// closedUDPPort is a loopback UDP port nothing reads: a query to it is
// answered by an ICMP port unreachable, which a connected socket reports
// as connection refused.
func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestDNSIPAddressIsNoName(t *testing.T) {
	err := Validate("dns", nil, []inventory.Host{{Name: "10.0.0.1", Address: "10.0.0.1"}})
	if err == nil || err.Error() != `host 10.0.0.1: param name: "10.0.0.1" is an IP address, not a name to resolve; pass --param name=NAME` {
		t.Errorf("Validate = %v", err)
	}
}
