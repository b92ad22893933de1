package check

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// expectLimit is how much of a reply a tcp check reads looking for its
// expect pattern.
const expectLimit = 4 << 10

// tcpCheck passes when a TCP connection to the host's port is accepted and,
// if asked, the host's reply matches a pattern.
//
// Params:
//
//	port     template; default the host's inventory port
//	timeout  duration for the whole exchange: connect, send, reply; default 5s
//	send     template; sent once connected. The escapes \r \n \t \\ \xHH are
//	         decoded first, so send=PING\r\n sends CR LF
//	expect   regular expression the reply must match, tried on the bytes
//	         read so far (at most the first 4 KiB) as they arrive
//
// A reply that ends (EOF, 4 KiB read, or timeout after some bytes) without
// matching is a fail naming what was read; no reply at all before the
// timeout is an error, like any timeout.
//
// Details: "connect_ms"; with expect, "reply" (what was read, Go-quoted).
type tcpCheck struct {
	port    *template.Template // nil: the host's own port
	timeout time.Duration
	send    *template.Template // nil: send nothing
	expect  *regexp.Regexp     // nil: read nothing
}

func newTCP(p params, _ Options) (Check, error) {
	port, err := p.template("port", checkPort, "a port 1-65535, or a template such as {{.Vars.ssh_port}}")
	if err != nil {
		return nil, err
	}
	timeout, err := p.duration("timeout", 5*time.Second, false)
	if err != nil {
		return nil, err
	}
	c := &tcpCheck{port: port, timeout: timeout}
	if v, ok := p.m["send"]; ok {
		unescaped := params{typ: p.typ, m: map[string]string{"send": unescape(v)}}
		if c.send, err = unescaped.template("send", func(string) error { return nil }, ""); err != nil {
			return nil, err
		}
	}
	if c.expect, err = p.regexp("expect"); err != nil {
		return nil, err
	}
	return c, nil
}

// target returns the host:port to dial, and checks that send renders.
func (c *tcpCheck) target(h inventory.Host) (string, error) {
	port, err := renderPort(c.port, h, h.Port)
	if err != nil {
		return "", err
	}
	if port == 0 {
		return "", &HostError{Host: h.Name, Param: "port", Err: ErrNoPort}
	}
	if c.send != nil {
		if _, err := render(c.send, h); err != nil {
			return "", err
		}
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port)), nil
}

func (c *tcpCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	addr, err := c.target(h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}
	dialCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dialCtx, "tcp", addr)
	if err != nil {
		status, why := outcome(ctx, err, start)
		return result(start, status, "connect %s: %s", addr, why)
	}
	defer conn.Close()
	connected := time.Since(start)
	details := map[string]string{"connect_ms": millis(connected)}
	if c.send == nil && c.expect == nil {
		res = result(start, StatusOK, "connected to %s in %s", addr, connected.Round(time.Microsecond))
		res.Details = details
		return res
	}

	// One deadline bounds the whole exchange; cancelling ctx moves it to
	// the past, which wakes a blocked Read or Write.
	conn.SetDeadline(start.Add(c.timeout))
	stop := context.AfterFunc(dialCtx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var msg string
	if c.send != nil {
		if msg, err = render(c.send, h); err != nil {
			return result(start, StatusError, "%v", err)
		}
		if _, err := io.WriteString(conn, msg); err != nil {
			status, why := outcome(ctx, err, start)
			return result(start, status, "send to %s: %s", addr, why)
		}
	}
	if c.expect == nil {
		res = result(start, StatusOK, "connected to %s and sent %d bytes in %s", addr, len(msg),
			time.Since(start).Round(time.Microsecond))
		res.Details = details
		return res
	}

	reply, matched, err := readUntil(conn, c.expect, expectLimit)
	details["reply"] = strconv.Quote(string(reply))
	switch {
	case matched:
		res = result(start, StatusOK, "%s replied %s, matching /%s/, in %s", addr, snippet(reply, 60), c.expect,
			time.Since(start).Round(time.Microsecond))
	case errors.Is(ctx.Err(), context.Canceled) || len(reply) == 0 && err != nil && !errors.Is(err, io.EOF):
		status, why := outcome(ctx, err, start)
		res = result(start, status, "%s: no reply matching /%s/: %s", addr, c.expect, why)
	default:
		res = result(start, StatusFail, "%s replied %s, which does not match /%s/", addr, snippet(reply, 120), c.expect)
	}
	res.Details = details
	return res
}

// readUntil reads from r until what it read matches re, limit bytes are
// read, or a read fails. err is the read error that stopped it, if any.
func readUntil(r io.Reader, re *regexp.Regexp, limit int) (got []byte, matched bool, err error) {
	buf := make([]byte, limit)
	n := 0
	for n < limit {
		k, err := r.Read(buf[n:])
		n += k
		if k > 0 && re.Match(buf[:n]) {
			return buf[:n], true, nil
		}
		if err != nil {
			return buf[:n], false, err
		}
	}
	return buf[:n], false, nil
}
