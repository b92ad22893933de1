package check

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// httpCheck passes when a request to the URL answers with an expected status
// and, if asked, a body that matches a pattern.
//
// Params:
//
//	url            template; default http://ADDRESS:PORT/, or http://ADDRESS/
//	               when the host has no port (IPv6 addresses in brackets)
//	status         expected status codes, comma separated; default 200
//	timeout        duration for the whole exchange, redirects and body
//	               included; default 10s
//	method         HTTP method; default GET
//	body           regular expression the response body (its first 1 MiB)
//	               must match
//	header         request headers, "Name: value", one per line; values are
//	               templates. One header is the usual case
//	               (--param 'header=Authorization: Bearer {{.Vars.token}}');
//	               several are separated by newlines, since ";" and "," occur
//	               inside header values:
//	               --param "header=$(printf 'X-A: 1\nX-B: 2')"
//	insecure       true to skip TLS certificate verification; default false
//	ca             absolute path of a PEM file on the worker holding the CA
//	               certificates to verify https against, instead of the
//	               system's; read when the check first runs
//	max_redirects  redirects followed, 0-100; default 10. A redirect past the
//	               limit is the response checked, so max_redirects=0 with
//	               status=301 checks the redirect itself
//
// Proxy environment variables are ignored: a check tests the host, not the
// proxy in front of the worker. A certificate that does not verify is a
// fail.
//
// Details: "status_code"; "ttfb_ms", from sending the last request to the
// first byte of its response; "redirects" when any were followed.
type httpCheck struct {
	url          *template.Template // nil: defaultURL
	want         []int
	timeout      time.Duration
	method       string
	body         *regexp.Regexp // nil: body not checked
	headers      []header
	maxRedirects int
	client       *http.Client
	ca           *caFile // nil: the system's roots

	caOnce   sync.Once
	caClient *http.Client // client, trusting ca; built on the first Run
}

// header is one request header; its value is a template.
type header struct {
	name  string // canonical, e.g. "X-Request-Id"
	value *template.Template
}

const (
	// drainLimit is how much of a response body is read before closing it
	// when the body is not checked.
	drainLimit = 64 << 10
	// bodyLimit is how much of a response body the body pattern sees.
	bodyLimit = 1 << 20
)

func newHTTP(p params, _ Options) (Check, error) {
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
	body, err := p.regexp("body")
	if err != nil {
		return nil, err
	}
	headers, err := parseHeaders(p)
	if err != nil {
		return nil, err
	}
	insecure, err := p.bool("insecure")
	if err != nil {
		return nil, err
	}
	maxRedirects, err := p.int("max_redirects", 10, 0, 100, "a number of redirects 0-100")
	if err != nil {
		return nil, err
	}
	ca, err := p.caFile("ca")
	if err != nil {
		return nil, err
	}
	c := &httpCheck{
		url:          u,
		want:         want,
		timeout:      timeout,
		method:       method,
		body:         body,
		headers:      headers,
		maxRedirects: maxRedirects,
		ca:           ca,
	}
	transport := &http.Transport{
		// Keep-alives off: no connection outlives a Run, so the check
		// needs no Close and leaves no goroutines behind.
		DialContext:       (&net.Dialer{}).DialContext,
		DisableKeepAlives: true,
	}
	if insecure {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	c.client = &http.Client{
		Transport: transport,
		// via holds the requests made so far: following the tenth
		// redirect has len(via) == 10. Past the limit, the redirect
		// response itself is what Do returns and what the check judges.
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) > c.maxRedirects {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return c, nil
}

// parseHeaders reads the header param: "Name: value" lines.
func parseHeaders(p params) ([]header, error) {
	v, ok := p.m["header"]
	if !ok {
		return nil, nil
	}
	var hs []header
	for line := range strings.Lines(v) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool { return !isTokenChar(r) }) {
			return nil, p.bad("header", `"Name: value" lines, e.g. Authorization: Bearer {{.Vars.token}}`)
		}
		t, err := template.New("header").Option("missingkey=error").Parse(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%w: %s header=%q: %v", ErrBadParam, p.typ, v, err)
		}
		hs = append(hs, header{name: textproto.CanonicalMIMEHeaderKey(name), value: t})
	}
	return hs, nil
}

// isTokenChar reports whether r may appear in an HTTP header name (RFC 9110 token).
func isTokenChar(r rune) bool {
	return r < 127 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// target returns the URL to request, and checks that the headers render.
func (c *httpCheck) target(h inventory.Host) (string, error) {
	for _, hd := range c.headers {
		if _, err := render(hd.value, h); err != nil {
			return "", err
		}
	}
	if c.url == nil {
		return defaultURL(h), nil
	}
	return renderChecked(c.url, h, checkURL)
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

// ttfb records when the last request went out and when its response's
// first byte came back. The transport calls its hooks from its own
// goroutines.
type ttfb struct {
	mu        sync.Mutex
	wrote     time.Time
	firstByte time.Time
}

func (t *ttfb) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) {
			t.mu.Lock()
			t.wrote, t.firstByte = time.Now(), time.Time{}
			t.mu.Unlock()
		},
		GotFirstResponseByte: func() {
			t.mu.Lock()
			t.firstByte = time.Now()
			t.mu.Unlock()
		},
	}
}

func (t *ttfb) get() (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wrote.IsZero() || t.firstByte.IsZero() {
		return 0, false
	}
	return t.firstByte.Sub(t.wrote), true
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
	var timing ttfb
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(reqCtx, timing.trace()), c.method, u, nil)
	if err != nil {
		return result(start, StatusError, "%s %s: %s", c.method, u, innermost(err))
	}
	client, err := c.clientWithCA()
	if err != nil {
		return result(start, StatusError, "%s %s: %v", c.method, u, err)
	}
	req.Header.Set("User-Agent", "patrol-check")
	for _, hd := range c.headers {
		v, err := render(hd.value, h)
		if err != nil {
			return result(start, StatusError, "%v", err)
		}
		if hd.name == "Host" {
			req.Host = v
		} else {
			req.Header.Add(hd.name, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		status, why := outcome(ctx, err, start)
		return result(start, status, "%s %s: %s", c.method, u, why)
	}
	defer resp.Body.Close()

	details := map[string]string{"status_code": strconv.Itoa(resp.StatusCode)}
	if d, ok := timing.get(); ok {
		details["ttfb_ms"] = millis(d)
	}
	redirects := 0
	for r := resp.Request; r.Response != nil; r = r.Response.Request {
		redirects++
	}
	if redirects > 0 {
		details["redirects"] = strconv.Itoa(redirects)
	}
	withDetails := func(r Result) Result { r.Details = details; return r }

	if !slices.Contains(c.want, resp.StatusCode) {
		if loc := resp.Header.Get("Location"); loc != "" && redirects == c.maxRedirects && resp.StatusCode/100 == 3 {
			return withDetails(result(start, StatusFail, "%s %s: stopped after %d redirects: status %d to %s, want %s",
				c.method, u, redirects, resp.StatusCode, cut(loc, 200), c.wantText()))
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		return withDetails(result(start, StatusFail, "%s %s: status %d, want %s", c.method, u, resp.StatusCode, c.wantText()))
	}
	if c.body == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		return withDetails(result(start, StatusOK, "%s %s: status %d in %s", c.method, u, resp.StatusCode,
			time.Since(start).Round(time.Microsecond)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	if err != nil {
		status, why := outcome(ctx, err, start)
		return withDetails(result(start, status, "%s %s: status %d, reading body: %s", c.method, u, resp.StatusCode, why))
	}
	if !c.body.Match(body) {
		return withDetails(result(start, StatusFail, "%s %s: status %d, body does not match /%s/: %d bytes starting %s",
			c.method, u, resp.StatusCode, c.body, len(body), snippet(body, 80)))
	}
	return withDetails(result(start, StatusOK, "%s %s: status %d, body matches /%s/, in %s", c.method, u, resp.StatusCode,
		c.body, time.Since(start).Round(time.Microsecond)))
}

// clientWithCA returns the client to use: c.client, or with a ca param a
// copy of it that trusts the CA file, read on the first call.
func (c *httpCheck) clientWithCA() (*http.Client, error) {
	if c.ca == nil {
		return c.client, nil
	}
	pool, err := c.ca.load()
	if err != nil {
		return nil, err
	}
	c.caOnce.Do(func() {
		t := c.client.Transport.(*http.Transport).Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.RootCAs = pool
		cl := *c.client
		cl.Transport = t
		c.caClient = &cl
	})
	return c.caClient, nil
}

func (c *httpCheck) wantText() string {
	s := make([]string, len(c.want))
	for i, code := range c.want {
		s[i] = strconv.Itoa(code)
	}
	return strings.Join(s, " or ")
}
