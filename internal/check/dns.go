package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// dnsTypes are the record types a dns check asks for.
var dnsTypes = map[string]uint16{
	"A": dns.TypeA, "AAAA": dns.TypeAAAA, "CNAME": dns.TypeCNAME, "MX": dns.TypeMX, "TXT": dns.TypeTXT, "SRV": dns.TypeSRV,
}

// dnsCheck resolves a name and judges the answer: that there is one, and,
// if asked, that it is the expected one.
//
// Params:
//
//	name     template; the name to resolve; default the host's address
//	type     the record type: A (default), AAAA, CNAME, MX, TXT or SRV
//	server   template; host:port of the DNS server to ask, e.g.
//	         {{.Address}}:53 to check each inventory host as a server;
//	         default the system resolver: the nameserver lines of
//	         /etc/resolv.conf, tried in order; only those: no search
//	         domains or ndots (the name is asked as written, fully
//	         qualified), no /etc/hosts, no nsswitch
//	expect   the answer wanted: either a comma-separated set that must
//	         equal the answers exactly (in any order; names compared
//	         without case or trailing dot), e.g. 192.0.2.1,192.0.2.2 or
//	         "10 mail.example.com"; or /REGEXP/, which some answer must
//	         match; an empty one (/ or //) is refused
//	timeout  duration for the whole check, every server tried; default 5s
//
// Answers are written as dig writes their data: A and AAAA an address,
// CNAME a name, MX "PREFERENCE NAME", TXT its strings joined, SRV
// "PRIORITY WEIGHT PORT TARGET"; names without their trailing dot. An
// answer truncated over UDP is asked again over TCP.
//
// ok: answers of the type (matching expect). fail: NXDOMAIN, no record of
// the type (NODATA), answers that do not match expect. error: SERVFAIL,
// REFUSED and other failure codes, a timeout, a server that cannot be
// reached (from the system resolver, only once every nameserver failed),
// which says why, e.g. connection refused, and is not called a timeout.
//
// Details: "answers" (comma separated), "rcode", "server", "time_ms" (the
// exchange that answered), "ttl" (the lowest TTL among the answers).
type dnsCheck struct {
	name    *template.Template // nil: the host's address
	qtype   uint16
	server  *template.Template // nil: the system resolver
	exact   []string           // expect as a set; nil when absent or a regexp
	match   *regexp.Regexp     // expect as a regexp
	expect  string             // as written, for messages
	timeout time.Duration
	// system returns the system resolver's servers, host:port each.
	system func() ([]string, error)
}

func newDNS(p params, _ Options) (Check, error) {
	name, err := p.template("name", checkDNSName, "a DNS name such as www.example.com, or a template such as {{.Vars.fqdn}}")
	if err != nil {
		return nil, err
	}
	c := &dnsCheck{name: name, qtype: dns.TypeA, system: resolvConf}
	if v, ok := p.m["type"]; ok {
		t, known := dnsTypes[strings.ToUpper(strings.TrimSpace(v))]
		if !known {
			return nil, p.bad("type", "one of A, AAAA, CNAME, MX, TXT, SRV")
		}
		c.qtype = t
	}
	if c.server, err = p.template("server", checkHostPort, "host:port of a DNS server, e.g. 192.0.2.53:53, [2001:db8::53]:53 or {{.Address}}:53"); err != nil {
		return nil, err
	}
	if v, ok := p.m["expect"]; ok {
		c.expect = v
		if strings.HasPrefix(v, "/") {
			// A regexp, written /REGEXP/: not empty, which would match
			// anything; errors show the value as written.
			re := strings.TrimPrefix(v, "/")
			if len(re) < 2 || !strings.HasSuffix(re, "/") {
				return nil, p.bad("expect", "/REGEXP/, a regular expression between slashes that some answer must match, e.g. /^192\\.0\\.2\\./ (not empty), or the answers wanted, comma separated")
			}
			if c.match, err = regexp.Compile(re[:len(re)-1]); err != nil {
				return nil, fmt.Errorf("%w: %s expect=%q: want /REGEXP/ with a regular expression (Go RE2 syntax) between the slashes: %v", ErrBadParam, p.typ, v, err)
			}
		} else {
			for f := range strings.SplitSeq(v, ",") {
				if f = normalAnswer(f); f != "" {
					c.exact = append(c.exact, f)
				}
			}
			if len(c.exact) == 0 {
				return nil, p.bad("expect", "the answers wanted, comma separated (e.g. 192.0.2.1,192.0.2.2), or /REGEXP/")
			}
			slices.Sort(c.exact)
		}
	}
	if c.timeout, err = p.duration("timeout", 5*time.Second, false); err != nil {
		return nil, err
	}
	return c, nil
}

// checkDNSName accepts a domain name that is not an IP address.
func checkDNSName(s string) error {
	if net.ParseIP(s) != nil {
		return fmt.Errorf("%q is an IP address, not a name to resolve", s)
	}
	if _, ok := dns.IsDomainName(s); !ok || s == "" {
		return fmt.Errorf("%q is not a DNS name", s)
	}
	return nil
}

// checkHostPort accepts host:port with a port 1-65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", s)
	}
	_, err = parsePort(port)
	return err
}

// normalAnswer is an answer as compared with expect: trimmed, lower case,
// without a name's trailing dot.
func normalAnswer(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// target returns the name to resolve and checks that server renders.
func (c *dnsCheck) target(h inventory.Host) (string, error) {
	if _, err := c.serverFor(h); err != nil {
		return "", err
	}
	if c.name == nil {
		if err := checkDNSName(h.Address); err != nil {
			return "", &HostError{Host: h.Name, Param: "name", Err: fmt.Errorf("%w; pass --param name=NAME", err)}
		}
		return h.Address, nil
	}
	return renderChecked(c.name, h, checkDNSName)
}

// serverFor renders the server param; "" for the system resolver.
func (c *dnsCheck) serverFor(h inventory.Host) (string, error) {
	if c.server == nil {
		return "", nil
	}
	return renderChecked(c.server, h, checkHostPort)
}

// resolvConf reads the system resolver's nameservers.
func resolvConf() ([]string, error) {
	conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("system resolver: %v; pass --param server=HOST:PORT", err)
	}
	var servers []string
	for _, s := range conf.Servers {
		servers = append(servers, net.JoinHostPort(s, conf.Port))
	}
	if len(servers) == 0 {
		return nil, errors.New("system resolver: no nameserver in /etc/resolv.conf; pass --param server=HOST:PORT")
	}
	return servers, nil
}

func (c *dnsCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	name, err := c.target(h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}
	server, _ := c.serverFor(h) // target rendered it
	servers := []string{server}
	if server == "" {
		if servers, err = c.system(); err != nil {
			return result(start, StatusError, "dns %s: %v", name, err)
		}
	}
	qtype := dns.TypeToString[c.qtype]
	what := fmt.Sprintf("dns %s %s", qtype, name)
	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), c.qtype)
	var (
		reply *dns.Msg
		rtt   time.Duration
		why   []string
		asked string
	)
	for i, s := range servers {
		// Each server gets an equal share of the time left.
		deadline, _ := runCtx.Deadline()
		actx, acancel := context.WithTimeout(runCtx, time.Until(deadline)/time.Duration(len(servers)-i))
		reply, rtt, err = exchange(actx, q, s)
		acancel()
		asked = s
		if err == nil && reply.Rcode != dns.RcodeServerFailure && reply.Rcode != dns.RcodeRefused {
			break
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return result(start, StatusError, "%s: cancelled", what)
			}
			why = append(why, s+": "+exchangeError(actx, err))
			reply = nil
		} else {
			why = append(why, s+": "+dns.RcodeToString[reply.Rcode])
		}
	}
	if reply == nil {
		return result(start, StatusError, "%s: no answer: %s", what, strings.Join(why, "; "))
	}

	var answers []string
	ttl := uint32(0)
	for _, rr := range reply.Answer {
		if rr.Header().Rrtype != c.qtype {
			continue
		}
		if a := answerText(rr); a != "" {
			if len(answers) == 0 || rr.Header().Ttl < ttl {
				ttl = rr.Header().Ttl
			}
			answers = append(answers, a)
		}
	}
	details := map[string]string{"rcode": dns.RcodeToString[reply.Rcode], "server": asked, "time_ms": millis(rtt)}
	if len(answers) > 0 {
		details["answers"] = strings.Join(answers, ",")
		details["ttl"] = strconv.FormatUint(uint64(ttl), 10)
	}
	withDetails := func(r Result) Result { r.Details = details; return r }
	shown := cut(strings.Join(answers, ", "), 200)
	switch {
	case reply.Rcode == dns.RcodeNameError:
		return withDetails(result(start, StatusFail, "%s: NXDOMAIN from %s: no such name", what, asked))
	case reply.Rcode != dns.RcodeSuccess:
		return withDetails(result(start, StatusError, "%s: %s from %s", what, dns.RcodeToString[reply.Rcode], asked))
	case len(answers) == 0:
		return withDetails(result(start, StatusFail, "%s: no %s record (NODATA) from %s", what, qtype, asked))
	case c.exact != nil && !slices.Equal(c.exact, normalSet(answers)):
		return withDetails(result(start, StatusFail, "%s: answers %s, want %s", what, shown, strings.Join(c.exact, ", ")))
	case c.match != nil && !slices.ContainsFunc(answers, c.match.MatchString):
		return withDetails(result(start, StatusFail, "%s: no answer matches %s: %s", what, c.expect, shown))
	}
	return withDetails(result(start, StatusOK, "%s: %s from %s in %s", what, shown, asked, rtt.Round(time.Microsecond)))
}

// normalSet is answers normalised and sorted, for comparing with expect.
func normalSet(answers []string) []string {
	out := make([]string, len(answers))
	for i, a := range answers {
		out[i] = normalAnswer(a)
	}
	slices.Sort(out)
	return out
}

// exchange asks server over UDP, and again over TCP when the answer was
// truncated. Cancelling ctx ends a pending exchange at once.
func exchange(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, time.Duration, error) {
	r, rtt, err := exchangeOver(ctx, "udp", q, server)
	if err == nil && r.Truncated {
		return exchangeOver(ctx, "tcp", q, server)
	}
	return r, rtt, err
}

func exchangeOver(ctx context.Context, network string, q *dns.Msg, server string) (*dns.Msg, time.Duration, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, server)
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	client := &dns.Client{Net: network, Timeout: time.Hour} // ctx's deadline bounds it
	return client.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: nc})
}

// exchangeError says why an exchange failed, as briefly as it can. It
// reads the error itself, not whether ctx has ended since (it has, once
// the exchange's cancel ran): a refused query is "connection refused".
// Only a deadline, or the socket closed because ctx ended, is a timeout.
func exchangeError(ctx context.Context, err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.Is(err, net.ErrClosed) && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timed out" // closed by the AfterFunc of exchangeOver
	}
	return innermost(err)
}

// answerText writes a record's data; "" for a type not asked for.
func answerText(rr dns.RR) string {
	switch r := rr.(type) {
	case *dns.A:
		return r.A.String()
	case *dns.AAAA:
		return r.AAAA.String()
	case *dns.CNAME:
		return strings.TrimSuffix(r.Target, ".")
	case *dns.MX:
		return fmt.Sprintf("%d %s", r.Preference, strings.TrimSuffix(r.Mx, "."))
	case *dns.TXT:
		return strings.Join(r.Txt, "")
	case *dns.SRV:
		return fmt.Sprintf("%d %d %d %s", r.Priority, r.Weight, r.Port, strings.TrimSuffix(r.Target, "."))
	}
	return ""
}
