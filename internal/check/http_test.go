package check

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// server starts a loopback HTTP server and returns it with the inventory
// host that points at it.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, inventory.Host) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, hostAt(t, srv.Listener.Addr().String())
}

func statusHandler(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		w.Write([]byte(strings.Repeat("x", 100<<10))) // more than the check drains
	}
}

func TestHTTP(t *testing.T) {
	ok, okHost := server(t, statusHandler(http.StatusOK))
	_, badHost := server(t, statusHandler(http.StatusInternalServerError))
	_, noContentHost := server(t, statusHandler(http.StatusNoContent))
	refused := hostAt(t, closedPort(t))

	var gotMethod, gotPath atomic.Value
	_, echoHost := server(t, func(w http.ResponseWriter, r *http.Request) {
		gotMethod.Store(r.Method)
		gotPath.Store(r.URL.Path)
	})

	tests := []struct {
		name   string
		params map[string]string
		host   inventory.Host
		status Status
		prefix string
	}{
		{"200", nil, okHost, StatusOK, "GET " + ok.URL + "/: status 200 in "},
		{"500", nil, badHost, StatusFail, "GET http://" + badHost.Name + "/: status 500, want 200"},
		{"status list", map[string]string{"status": "200, 204"}, noContentHost, StatusOK, "GET http://" + noContentHost.Name + "/: status 204"},
		{"status not in list", map[string]string{"status": "201,202"}, okHost, StatusFail, "GET http://" + okHost.Name + "/: status 200, want 201 or 202"},
		{"refused", nil, refused, StatusFail, "GET http://" + refused.Name + "/: connection refused"},
		{"url template",
			map[string]string{"url": "http://{{.Address}}:{{.Port}}/health/{{.Vars.zone}}"},
			inventory.Host{Name: "lo", Address: okHost.Address, Port: okHost.Port, Vars: map[string]string{"zone": "dc1"}},
			StatusOK, "GET http://" + okHost.Name + "/health/dc1: status 200"},
		{"url does not render", map[string]string{"url": "http://{{.Address}}/{{.Vars.zone}}"}, okHost,
			StatusError, "host " + okHost.Name + ": param url: template: url:1:27: executing \"url\" at <.Vars.zone>: map has no entry for key \"zone\""},
		{"port 0 in url", map[string]string{"url": "http://{{.Address}}:{{.Port}}/"}, inventory.Host{Name: "web1", Address: "web1"},
			StatusError, `host web1: param url: "http://web1:0/" has port 0 (must be 1-65535)`},
		{"dns failure", map[string]string{"timeout": "2s"}, inventory.Host{Name: "nowhere.invalid", Address: "nowhere.invalid"},
			StatusError, "GET http://nowhere.invalid/: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustNew(t, "http", tt.params).Run(context.Background(), tt.host)
			expect(t, res, tt.status, tt.prefix)
		})
	}

	t.Run("method", func(t *testing.T) {
		res := mustNew(t, "http", map[string]string{"method": "head", "url": "http://{{.Host}}/ping"}).Run(context.Background(), echoHost)
		expect(t, res, StatusOK, "HEAD http://"+echoHost.Name+"/ping: status 200")
		if gotMethod.Load() != "HEAD" || gotPath.Load() != "/ping" {
			t.Errorf("server saw %v %v, want HEAD /ping", gotMethod.Load(), gotPath.Load())
		}
	})
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before server's Close, which waits for handlers

	res := mustNew(t, "http", map[string]string{"timeout": "50ms"}).Run(context.Background(), h)
	expect(t, res, StatusError, "GET http://"+h.Name+"/: timed out after ")
}

func TestHTTPCancelled(t *testing.T) {
	_, h := server(t, statusHandler(http.StatusOK))
	res := mustNew(t, "http", nil).Run(cancelled(), h)
	expect(t, res, StatusError, "GET http://"+h.Name+"/: cancelled")
}

func TestHTTPRedirectLoop(t *testing.T) {
	var requests atomic.Int32
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Redirect(w, r, "/again", http.StatusFound)
	})
	res := mustNew(t, "http", nil).Run(context.Background(), h)
	expect(t, res, StatusFail, "GET http://"+h.Name+"/: stopped after 10 redirects")
	if n := requests.Load(); n != 11 {
		t.Errorf("server saw %d requests, want 11 (the first and 10 redirects)", n)
	}
}

func TestHTTPFollowsRedirect(t *testing.T) {
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/there", http.StatusMovedPermanently)
		}
	})
	expect(t, mustNew(t, "http", nil).Run(context.Background(), h), StatusOK, "GET http://"+h.Name+"/: status 200")
}

func TestHTTPDefaultURLIPv6(t *testing.T) {
	skipWithoutIPv6(t)
	srv := httptest.NewUnstartedServer(statusHandler(http.StatusOK))
	srv.Listener.Close()
	srv.Listener = mustListen(t, "tcp", "[::1]:0")
	srv.Start()
	t.Cleanup(srv.Close)

	h := hostAt(t, srv.Listener.Addr().String())
	expect(t, mustNew(t, "http", nil).Run(context.Background(), h), StatusOK, "GET http://[::1]:")
}

func TestDefaultURL(t *testing.T) {
	tests := []struct {
		host inventory.Host
		want string
	}{
		{inventory.Host{Address: "web1"}, "http://web1/"},
		{inventory.Host{Address: "web1", Port: 8080}, "http://web1:8080/"},
		{inventory.Host{Address: "::1"}, "http://[::1]/"},
		{inventory.Host{Address: "::1", Port: 8080}, "http://[::1]:8080/"},
		{inventory.Host{Address: "fe80::1%eth0", Port: 80}, "http://[fe80::1%25eth0]:80/"},
	}
	for _, tt := range tests {
		if got := defaultURL(tt.host); got != tt.want {
			t.Errorf("defaultURL(%+v) = %q, want %q", tt.host, got, tt.want)
		}
		if err := checkURL(defaultURL(tt.host)); err != nil {
			t.Errorf("checkURL(defaultURL(%+v)): %v", tt.host, err)
		}
	}
}

func TestHTTPTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(statusHandler(http.StatusOK))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h := hostAt(t, srv.Listener.Addr().String())
	url := map[string]string{"url": "https://{{.Host}}/"}

	// httptest's certificate is signed by no CA the worker trusts.
	res := mustNew(t, "http", url).Run(context.Background(), h)
	expect(t, res, StatusFail, "GET https://"+h.Name+"/: tls: failed to verify certificate: x509: certificate signed by unknown authority")

	url["insecure"] = "true"
	res = mustNew(t, "http", url).Run(context.Background(), h)
	expect(t, res, StatusOK, "GET https://"+h.Name+"/: status 200 in ")
}

func TestHTTPBody(t *testing.T) {
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status": "degraded", "db": "down"}`)
	})
	tests := []struct {
		name   string
		body   string
		status Status
		prefix string
	}{
		{"matches", `"db": "down"`, StatusOK, "GET http://" + h.Name + `/: status 200, body matches /"db": "down"/, in `},
		{"does not match", `"status":\s*"ok"`, StatusFail,
			"GET http://" + h.Name + `/: status 200, body does not match /"status":\s*"ok"/: 36 bytes starting "{\"status\": \"degraded\", \"db\": \"down\"}"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, mustNew(t, "http", map[string]string{"body": tt.body}).Run(context.Background(), h), tt.status, tt.prefix)
		})
	}
}

// TestHTTPSlowBody: the timeout covers the body as well as the headers.
func TestHTTPSlowBody(t *testing.T) {
	release := make(chan struct{})
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })

	res := mustNew(t, "http", map[string]string{"body": "complete", "timeout": "1s"}).Run(context.Background(), h)
	expect(t, res, StatusError, "GET http://"+h.Name+"/: status 200, reading body: timed out after ")
	if res.Details["status_code"] != "200" || res.Details["ttfb_ms"] == "" {
		t.Errorf("Details = %v, want status_code 200 and ttfb_ms", res.Details)
	}
}

func TestHTTPDetails(t *testing.T) {
	_, h := server(t, statusHandler(http.StatusTeapot))
	res := mustNew(t, "http", map[string]string{"status": "418"}).Run(context.Background(), h)
	expect(t, res, StatusOK, "GET http://"+h.Name+"/: status 418")
	if res.Details["status_code"] != "418" {
		t.Errorf("Details[status_code] = %q, want 418", res.Details["status_code"])
	}
	ttfb, err := strconv.ParseFloat(res.Details["ttfb_ms"], 64)
	if err != nil || ttfb <= 0 || ttfb > float64(res.Duration.Milliseconds()+1) {
		t.Errorf("Details[ttfb_ms] = %q, want a positive number of ms within the check's %v", res.Details["ttfb_ms"], res.Duration)
	}
	if _, ok := res.Details["redirects"]; ok {
		t.Errorf("Details = %v, want no redirects", res.Details)
	}
}

func TestHTTPHeaders(t *testing.T) {
	var got atomic.Value
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		got.Store(fmt.Sprintf("host=%s auth=%s x=%q ua=%s", r.Host, r.Header.Get("Authorization"), r.Header.Values("X-Trace"), r.UserAgent()))
	})
	h.Vars = map[string]string{"token": "s3cr;t, really"}
	params := map[string]string{"header": "Authorization: Bearer {{.Vars.token}}\nx-trace: a; b\n\nHost: vhost.example"}
	expect(t, mustNew(t, "http", params).Run(context.Background(), h), StatusOK, "GET http://"+h.Name+"/: status 200")
	if want := `host=vhost.example auth=Bearer s3cr;t, really x=["a; b"] ua=patrol-check`; got.Load() != want {
		t.Errorf("server saw %v, want %s", got.Load(), want)
	}
}

func TestHTTPMaxRedirects(t *testing.T) {
	// /3 redirects to /2, /2 to /1, /1 to /0, which answers 200.
	var requests atomic.Int32
	_, h := server(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/")); n > 0 {
			http.Redirect(w, r, "/"+strconv.Itoa(n-1), http.StatusFound)
		}
	})
	tests := []struct {
		name      string
		params    map[string]string
		status    Status
		prefix    string
		requests  int32
		redirects string
	}{
		{"within the limit", map[string]string{"url": "http://{{.Host}}/3", "max_redirects": "3"},
			StatusOK, "GET http://" + h.Name + "/3: status 200", 4, "3"},
		{"past the limit", map[string]string{"url": "http://{{.Host}}/3", "max_redirects": "2"},
			StatusFail, "GET http://" + h.Name + "/3: stopped after 2 redirects: status 302 to /0, want 200", 3, "2"},
		{"0 checks the redirect itself", map[string]string{"url": "http://{{.Host}}/3", "max_redirects": "0", "status": "302"},
			StatusOK, "GET http://" + h.Name + "/3: status 302", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requests.Store(0)
			res := mustNew(t, "http", tt.params).Run(context.Background(), h)
			expect(t, res, tt.status, tt.prefix)
			if n := requests.Load(); n != tt.requests {
				t.Errorf("server saw %d requests, want %d", n, tt.requests)
			}
			if res.Details["redirects"] != tt.redirects {
				t.Errorf("Details[redirects] = %q, want %q", res.Details["redirects"], tt.redirects)
			}
		})
	}
}
