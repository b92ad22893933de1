package check

import (
	"context"
	"net"
	"strconv"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// tcpCheck passes when a TCP connection to the host's port is accepted.
//
// Params:
//
//	port     template; default the host's inventory port
//	timeout  duration; default 5s
type tcpCheck struct {
	port    *template.Template // nil: the host's own port
	timeout time.Duration
}

func newTCP(p params) (Check, error) {
	port, err := p.template("port", checkPort, "a port 1-65535, or a template such as {{.Vars.ssh_port}}")
	if err != nil {
		return nil, err
	}
	timeout, err := p.duration("timeout", 5*time.Second, false)
	if err != nil {
		return nil, err
	}
	return &tcpCheck{port: port, timeout: timeout}, nil
}

// target returns the host:port to dial.
func (c *tcpCheck) target(h inventory.Host) (string, error) {
	port := h.Port
	if c.port != nil {
		s, err := render(c.port, h)
		if err != nil {
			return "", err
		}
		if port, err = parsePort(s); err != nil {
			return "", &HostError{Host: h.Name, Param: "port", Err: err}
		}
	}
	if port == 0 {
		return "", &HostError{Host: h.Name, Param: "port", Err: ErrNoPort}
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
	conn.Close()
	return result(start, StatusOK, "connected to %s in %s", addr, time.Since(start).Round(time.Microsecond))
}
