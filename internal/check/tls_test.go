package check

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/nettest"
)

// tlsServer serves certs on loopback until the test ends.
func tlsServer(t *testing.T, certs ...tls.Certificate) inventory.Host {
	t.Helper()
	s, err := nettest.ServeTLS(certs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return hostAt(t, s.Addr)
}

func issue(t *testing.T, ca *nettest.CA, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(notAfter, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t *testing.T, name string) *nettest.CA {
	t.Helper()
	ca, err := nettest.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestTLS(t *testing.T) {
	ca, other := newCA(t, "Patrol Test CA"), newCA(t, "Someone Else's CA")
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caPath, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	// Certificates as issued for n days, checked a moment later: n days
	// left, rounded up, as a person counts them.
	days := func(n int) time.Time { return time.Now().Add(time.Duration(n) * 24 * time.Hour) }
	in90 := tlsServer(t, issue(t, ca, days(90), "localhost", "127.0.0.1"))
	in20 := tlsServer(t, issue(t, ca, days(20), "localhost", "127.0.0.1"))
	in3 := tlsServer(t, issue(t, ca, days(3), "localhost", "127.0.0.1"))
	in1 := tlsServer(t, issue(t, ca, time.Now().Add(time.Hour), "localhost", "127.0.0.1"))
	expired := tlsServer(t, issue(t, ca, time.Now().Add(-49*time.Hour), "localhost", "127.0.0.1"))
	expired1 := tlsServer(t, issue(t, ca, time.Now().Add(-25*time.Hour), "localhost", "127.0.0.1"))
	expiredToday := tlsServer(t, issue(t, ca, time.Now().Add(-time.Minute), "localhost", "127.0.0.1"))
	expiredUntrusted := tlsServer(t, issue(t, other, time.Now().Add(-time.Minute), "localhost", "127.0.0.1"))
	notYet, err := ca.IssueBetween(time.Now().Add(48*time.Hour), days(90), "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	future := tlsServer(t, notYet)
	wrongName := tlsServer(t, issue(t, ca, days(90), "wrong.example"))
	untrusted := tlsServer(t, issue(t, other, days(20), "localhost", "127.0.0.1"))
	// Two certificates on one port: the client's SNI picks one.
	sni := tlsServer(t, issue(t, ca, days(90), "default.test"), issue(t, ca, days(20), "app.test"))
	plain := hostAt(t, openPort(t, "tcp", "127.0.0.1:0")) // accepts, never answers
	closed := hostAt(t, closedPort(t))

	withCA := map[string]string{"ca": caPath}
	tests := []struct {
		name    string
		host    inventory.Host
		params  map[string]string
		status  Status
		message string
		details map[string]string // must be among the result's details
	}{
		{"90 days left", in90, withCA, StatusOK, "tls " + in90.Name + ": certificate expires in 90 days (",
			map[string]string{"days_left": "90", "verified": "true", "subject": "CN=localhost", "sans": "localhost,127.0.0.1",
				"issuer": "CN=Patrol Test CA,O=Patrol test", "tls_version": "TLS 1.3"}},
		{"20 days left warns", in20, withCA, StatusWarn, "tls " + in20.Name + ": certificate expires in 20 days (",
			map[string]string{"days_left": "20", "verified": "true"}},
		{"3 days left fails", in3, withCA, StatusFail, "tls " + in3.Name + ": certificate expires in 3 days (",
			map[string]string{"days_left": "3"}},
		{"thresholds are params", in20, map[string]string{"ca": caPath, "warn_days": "10", "fail_days": "5"}, StatusOK,
			"tls " + in20.Name + ": certificate expires in 20 days", nil},
		{"3 days left, within a custom warn", in3, map[string]string{"ca": caPath, "warn_days": "5", "fail_days": "1"}, StatusWarn,
			"tls " + in3.Name + ": certificate expires in 3 days (", nil},
		{"expired", expired, withCA, StatusFail, "tls " + expired.Name + ": certificate expired 2 days ago (",
			map[string]string{"days_left": "-2", "verified": "false", "verify_error": "expired"}},
		{"expired a day ago", expired1, withCA, StatusFail, "tls " + expired1.Name + ": certificate expired 1 day ago (",
			map[string]string{"days_left": "-1", "verified": "false", "verify_error": "expired"}},
		{"expired within the day", expiredToday, withCA, StatusFail, "tls " + expiredToday.Name + ": certificate expired less than a day ago (",
			map[string]string{"days_left": "0", "verified": "false"}},
		{"expired, and an unknown authority", expiredUntrusted, withCA, StatusFail,
			"tls " + expiredUntrusted.Name + ": certificate does not verify: signed by an unknown authority (pass the CA with ca=FILE, or insecure=true); expired less than a day ago (",
			map[string]string{"days_left": "0", "verified": "false", "verify_error": "signed by an unknown authority (pass the CA with ca=FILE, or insecure=true)"}},
		{"expired, insecure", expired1, map[string]string{"insecure": "true"}, StatusFail, "tls " + expired1.Name + ": certificate expired 1 day ago (",
			map[string]string{"days_left": "-1", "verified": "skipped"}},
		{"not yet valid", future, withCA, StatusFail, "tls " + future.Name + ": certificate not valid before ",
			map[string]string{"verified": "false", "verify_error": "not yet valid"}},
		{"a day left", in1, withCA, StatusFail, "tls " + in1.Name + ": certificate expires in 1 day (", map[string]string{"days_left": "1"}},
		{"name mismatch", wrongName, withCA, StatusFail,
			"tls " + wrongName.Name + ": certificate does not verify: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs; expires in 90 days",
			map[string]string{"verified": "false", "sans": "wrong.example"}},
		{"name mismatch, by server_name", in90, map[string]string{"ca": caPath, "server_name": "www.example.com"}, StatusFail,
			"tls " + in90.Name + " (www.example.com): certificate does not verify: certificate is valid for localhost, not www.example.com", nil},
		{"server_name", in90, map[string]string{"ca": caPath, "server_name": "localhost"}, StatusOK,
			"tls " + in90.Name + " (localhost): certificate expires in 90 days", nil},
		{"SNI picks the certificate", sni, map[string]string{"ca": caPath, "server_name": "app.test"}, StatusWarn,
			"tls " + sni.Name + " (app.test): certificate expires in 20 days", map[string]string{"subject": "CN=app.test"}},
		{"untrusted CA", untrusted, withCA, StatusFail,
			"tls " + untrusted.Name + ": certificate does not verify: signed by an unknown authority (pass the CA with ca=FILE, or insecure=true); expires in 20 days",
			map[string]string{"verified": "false", "issuer": "CN=Someone Else's CA,O=Patrol test"}},
		{"not the system's CA either", in90, nil, StatusFail, "tls " + in90.Name + ": certificate does not verify: signed by an unknown authority", nil},
		{"insecure still judges expiry", untrusted, map[string]string{"insecure": "true"}, StatusWarn,
			"tls " + untrusted.Name + ": certificate expires in 20 days", map[string]string{"verified": "skipped"}},
		{"port param", inventory.Host{Name: "lo", Address: "127.0.0.1"}, map[string]string{"ca": caPath, "port": strconv.Itoa(in90.Port)},
			StatusOK, "tls " + in90.Name + ": certificate expires in 90 days", nil},
		{"not TLS: the handshake times out", plain, map[string]string{"timeout": "300ms"}, StatusError, "tls " + plain.Name + ": handshake: timed out after ", nil},
		{"refused", closed, nil, StatusFail, "tls " + closed.Name + ": connect: connection refused", nil},
		{"ca file missing on the worker", in90, map[string]string{"ca": "/nonexistent/ca.pem"}, StatusError,
			"tls " + in90.Name + ": ca /nonexistent/ca.pem: no such file or directory; put the CA file on every worker", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustNew(t, "tls", tt.params).Run(context.Background(), tt.host)
			expect(t, res, tt.status, tt.message)
			for k, v := range tt.details {
				if res.Details[k] != v {
					t.Errorf("Details[%q] = %q, want %q", k, res.Details[k], v)
				}
			}
		})
	}
}

// TestTLSNotTLS: a server that answers with something other than TLS
// fails the handshake.
func TestTLSNotTLS(t *testing.T) {
	ln := mustListen(t, "tcp", "127.0.0.1:0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	h := hostAt(t, ln.Addr().String())
	res := mustNew(t, "tls", nil).Run(context.Background(), h)
	expect(t, res, StatusFail, "tls "+h.Name+": handshake failed: ")
}

func TestHTTPCA(t *testing.T) {
	ca := newCA(t, "Patrol Test CA")
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caPath, ca.PEM(), 0o600)
	srv := tlsHTTPServer(t, issue(t, ca, time.Now().Add(time.Hour), "127.0.0.1"))
	u := "https://" + srv + "/"
	expect(t, mustNew(t, "http", map[string]string{"url": u}).Run(context.Background(), inventory.Host{Name: "h"}),
		StatusFail, "GET "+u+": tls: failed to verify certificate: x509: certificate signed by unknown authority")
	expect(t, mustNew(t, "http", map[string]string{"url": u, "ca": caPath}).Run(context.Background(), inventory.Host{Name: "h"}),
		StatusOK, "GET "+u+": status 200")
	expect(t, mustNew(t, "http", map[string]string{"url": u, "ca": "/nonexistent/ca.pem"}).Run(context.Background(), inventory.Host{Name: "h"}),
		StatusError, "GET "+u+": ca /nonexistent/ca.pem: no such file or directory")
}

// tlsHTTPServer serves 200 over https with cert on loopback.
func tlsHTTPServer(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}
