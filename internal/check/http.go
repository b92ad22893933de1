package check

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// httpCheck passes when a request to the URL answers with an expected status.
//
// Params:
//
//	url      template; default http://ADDRESS:PORT/, or http://ADDRESS/ when
//	         the host has no port (IPv6 addresses in brackets)
//	status   expected status codes, comma separated; default 200
//	timeout  duration for the whole exchange, redirects included; default 10s
//	method   HTTP method; default GET
//
// Up to 10 redirects are followed. Proxy environment variables are ignored:
// a check tests the host, not the proxy in front of the worker.
type httpCheck struct {
	url     *template.Template // nil: defaultURL
	want    []int
	timeout time.Duration
	method  string
	client  *http.Client
}

// drainLimit is how much of a response body is read before closing it.
const drainLimit = 64 << 10

func newHTTP(p params) (Check, error) {
	u, err := p.template("url", checkURL, "an http:// or https:// URL, e.g. http://{{.Address}}:8080/health")
	if err != nil {
		return nil, err
	}
	want := []int{http.StatusOK}
	if v, ok := p.m["status"]; ok {
		want = want[:0]
		for f := range strings.SplitSeq(v, ",") {
			code, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || code < 100 || code > 599 {
				return nil, p.bad("status", "HTTP status codes 100-599, e.g. 200 or 200,204")
			}
			want = append(want, code)
		}
	}
	timeout, err := p.duration("timeout", 10*time.Second, false)
	if err != nil {
		return nil, err
	}
	method := http.MethodGet
	if v, ok := p.m["method"]; ok {
		method = strings.ToUpper(v)
		if method == "" || strings.IndexFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
			return nil, p.bad("method", "an HTTP method such as GET or HEAD")
		}
	}
	return &httpCheck{
		url:     u,
		want:    want,
		timeout: timeout,
		method:  method,
		client: &http.Client{
			// Keep-alives off: no connection outlives a Run, so the check
			// needs no Close and leaves no goroutines behind.
			Transport: &http.Transport{
				DialContext:       (&net.Dialer{}).DialContext,
				DisableKeepAlives: true,
			},
			// via holds the requests made so far, so following the
			// tenth redirect has len(via) == 10.
			CheckRedirect: func(_ *http.Request, via []*http.Request) error {
				if len(via) > 10 {
					return errTooManyRedirects
				}
				return nil
			},
		},
	}, nil
}

// target returns the URL to request.
func (c *httpCheck) target(h inventory.Host) (string, error) {
	if c.url == nil {
		return defaultURL(h), nil
	}
	s, err := render(c.url, h)
	if err != nil {
		return "", err
	}
	if err := checkURL(s); err != nil {
		return "", &HostError{Host: h.Name, Param: "url", Err: err}
	}
	return s, nil
}

func defaultURL(h inventory.Host) string {
	host := h.Address
	if h.Port != 0 {
		host = net.JoinHostPort(h.Address, strconv.Itoa(h.Port))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return (&url.URL{Scheme: "http", Host: host, Path: "/"}).String()
}

func (c *httpCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	u, err := c.target(h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, c.method, u, nil)
	if err != nil {
		return result(start, StatusError, "%s %s: %s", c.method, u, innermost(err))
	}
	req.Header.Set("User-Agent", "patrol-check")
	resp, err := c.client.Do(req)
	if err != nil {
		status, why := outcome(ctx, err, start)
		return result(start, status, "%s %s: %s", c.method, u, why)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	resp.Body.Close()

	if !slices.Contains(c.want, resp.StatusCode) {
		return result(start, StatusFail, "%s %s: status %d, want %s", c.method, u, resp.StatusCode, c.wantText())
	}
	return result(start, StatusOK, "%s %s: status %d in %s", c.method, u, resp.StatusCode,
		time.Since(start).Round(time.Microsecond))
}

func (c *httpCheck) wantText() string {
	s := make([]string, len(c.want))
	for i, code := range c.want {
		s[i] = strconv.Itoa(code)
	}
	return strings.Join(s, " or ")
}
