package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// tlsCheck connects, makes a TLS handshake and judges the certificate the
// host presents: that it verifies (chain and name) and how long it has
// left before it expires.
//
// Params:
//
//	port         template; default the host's inventory port, else 443
//	server_name  template; the name sent as SNI and verified against the
//	             certificate; default the host's address (an IP address is
//	             verified against the certificate's IP SANs, and sends no SNI)
//	warn_days    whole days; warn when the certificate has fewer left
//	             (days_left, rounded up); default 30
//	fail_days    whole days; fail when it expires in fewer; default 7; at
//	             most warn_days
//	insecure     true to skip verifying the chain and the name; expiry is
//	             still judged; default false
//	ca           absolute path of a PEM file on the worker holding the CA
//	             certificates to verify against, instead of the system's
//	timeout      duration for connect and handshake; default 10s
//
// ok: the certificate verifies and has warn_days or more left. warn: fewer
// than warn_days left. fail: fewer than fail_days, expired, not yet
// valid, a chain that does not verify (unknown authority) or a name it is
// not valid for (each with the reason), a refused connection, or a
// handshake the host failed. error: timeout, DNS failure, a ca file the
// worker cannot read.
//
// Details: "days_left" (the days it is still valid on, rounded up: 3
// with 2 days and an hour left; 0 in the day after it expired, -N once it
// expired N whole days ago; see daysLeft), "not_after" and "not_before"
// (RFC 3339), "subject", "issuer", "sans" (DNS names and IP addresses,
// comma separated), "serial", "verified" (true; false, with the reason in
// "verify_error": expired, not yet valid, an unknown authority, a name it
// is not valid for; skipped only with insecure), "tls_version",
// "handshake_ms". The verdict is judged on days_left.
type tlsCheck struct {
	port       *template.Template // nil: the host's port, else 443
	serverName *template.Template // nil: the host's address
	warnDays   int
	failDays   int
	insecure   bool
	ca         *caFile // nil: the system's roots
	timeout    time.Duration
}

func newTLS(p params, _ Options) (Check, error) {
	port, err := p.template("port", checkPort, "a port 1-65535, or a template such as {{.Vars.https_port}}")
	if err != nil {
		return nil, err
	}
	serverName, err := p.template("server_name", checkServerName, "a host name such as www.example.com, or a template such as {{.Vars.fqdn}}")
	if err != nil {
		return nil, err
	}
	warnDays, err := p.int("warn_days", 30, 0, 3650, "a whole number of days 0-3650, e.g. 30")
	if err != nil {
		return nil, err
	}
	failDays, err := p.int("fail_days", 7, 0, 3650, "a whole number of days 0-3650, e.g. 7")
	if err != nil {
		return nil, err
	}
	if failDays > warnDays {
		return nil, p.bad("fail_days", fmt.Sprintf("at most warn_days (%d): a certificate warns before it fails; lower fail_days or raise warn_days", warnDays))
	}
	insecure, err := p.bool("insecure")
	if err != nil {
		return nil, err
	}
	ca, err := p.caFile("ca")
	if err != nil {
		return nil, err
	}
	timeout, err := p.duration("timeout", 10*time.Second, false)
	if err != nil {
		return nil, err
	}
	return &tlsCheck{port: port, serverName: serverName, warnDays: warnDays, failDays: failDays, insecure: insecure, ca: ca, timeout: timeout}, nil
}

// checkServerName accepts a DNS name or an IP address.
func checkServerName(s string) error {
	if s == "" || strings.ContainsAny(s, " /:@") && net.ParseIP(s) == nil {
		return fmt.Errorf("%q is not a host name", s)
	}
	return nil
}

// target returns the host:port to dial, and checks that server_name renders.
func (c *tlsCheck) target(h inventory.Host) (string, error) {
	if _, err := c.name(h); err != nil {
		return "", err
	}
	port, err := renderPort(c.port, h, h.Port)
	if err != nil {
		return "", err
	}
	if port == 0 {
		port = 443
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port)), nil
}

// name is the name to send as SNI and verify.
func (c *tlsCheck) name(h inventory.Host) (string, error) {
	if c.serverName == nil {
		return h.Address, nil
	}
	return renderChecked(c.serverName, h, checkServerName)
}

func (c *tlsCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	addr, err := c.target(h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}
	name, _ := c.name(h) // target rendered it
	var roots *x509.CertPool
	if c.ca != nil {
		if roots, err = c.ca.load(); err != nil {
			return result(start, StatusError, "tls %s: %v", addr, err)
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(runCtx, "tcp", addr)
	if err != nil {
		status, why := outcome(ctx, err, start)
		return result(start, status, "tls %s: connect: %s", addr, why)
	}
	defer conn.Close()
	// Verification is done below, so that a certificate that does not
	// verify is still reported: its expiry, issuer and names.
	tc := tls.Client(conn, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	shakeStart := time.Now()
	if err := tc.HandshakeContext(runCtx); err != nil {
		if runCtx.Err() != nil {
			status, why := outcome(ctx, runCtx.Err(), start)
			return result(start, status, "tls %s: handshake: %s", addr, why)
		}
		return result(start, StatusFail, "tls %s: handshake failed: %s", addr, innermost(err))
	}
	state := tc.ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return result(start, StatusFail, "tls %s: the server presented no certificate", addr)
	}
	leaf := state.PeerCertificates[0]
	now := time.Now()
	left := leaf.NotAfter.Sub(now)
	days := daysLeft(left)
	details := map[string]string{
		"days_left":    strconv.Itoa(days),
		"not_after":    leaf.NotAfter.UTC().Format(time.RFC3339),
		"not_before":   leaf.NotBefore.UTC().Format(time.RFC3339),
		"subject":      leaf.Subject.String(),
		"issuer":       leaf.Issuer.String(),
		"serial":       leaf.SerialNumber.Text(16),
		"tls_version":  tls.VersionName(state.Version),
		"handshake_ms": millis(now.Sub(shakeStart)),
	}
	if c.insecure {
		details["verified"] = "skipped"
	}
	if sans := certNames(leaf); len(sans) > 0 {
		details["sans"] = strings.Join(sans, ",")
	}
	withDetails := func(r Result) Result { r.Details = details; return r }

	who := addr
	if name != h.Address {
		who += " (" + name + ")"
	}
	expiry := fmt.Sprintf("expires in %s (%s)", plural(days, "day"), leaf.NotAfter.UTC().Format(time.DateOnly))
	switch {
	case left <= 0 && days == 0:
		expiry = fmt.Sprintf("expired less than a day ago (%s)", leaf.NotAfter.UTC().Format(time.RFC3339))
	case left <= 0:
		expiry = fmt.Sprintf("expired %s ago (%s)", plural(-days, "day"), leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if !c.insecure {
		inter := x509.NewCertPool()
		for _, cert := range state.PeerCertificates[1:] {
			inter.AddCert(cert)
		}
		opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: now}
		_, err := leaf.Verify(opts)
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			// Expired or not yet valid: it does not verify, and its dates
			// are judged below, with a clearer message. Whether the chain
			// and the name would verify is asked at a time it is valid.
			details["verified"] = "false"
			details["verify_error"] = "expired"
			if now.Before(leaf.NotBefore) {
				details["verify_error"] = "not yet valid"
			}
			opts.CurrentTime = leaf.NotAfter.Add(-time.Second) // the last moment it was valid
			if now.Before(leaf.NotBefore) {
				opts.CurrentTime = leaf.NotBefore.Add(time.Second) // the first
			}
			if _, err = leaf.Verify(opts); errors.As(err, &invalid) && invalid.Reason == x509.Expired {
				err = nil // a CA's dates then: the leaf's are reported
			}
		}
		switch {
		case err != nil:
			details["verified"] = "false"
			details["verify_error"] = verifyReason(err)
			return withDetails(result(start, StatusFail, "tls %s: certificate does not verify: %s; %s; subject %s, issuer %s",
				who, verifyReason(err), expiry, shortName(leaf.Subject), shortName(leaf.Issuer)))
		case details["verified"] == "":
			details["verified"] = "true"
		}
	}
	switch {
	case now.Before(leaf.NotBefore):
		return withDetails(result(start, StatusFail, "tls %s: certificate not valid before %s", who, leaf.NotBefore.UTC().Format(time.RFC3339)))
	case left <= 0:
		return withDetails(result(start, StatusFail, "tls %s: certificate %s", who, expiry))
	case days < c.failDays:
		return withDetails(result(start, StatusFail, "tls %s: certificate %s, within fail_days=%d", who, expiry, c.failDays))
	case days < c.warnDays:
		return withDetails(result(start, StatusWarn, "tls %s: certificate %s, within warn_days=%d", who, expiry, c.warnDays))
	}
	return withDetails(result(start, StatusOK, "tls %s: certificate %s; subject %s, issuer %s", who, expiry,
		shortName(leaf.Subject), shortName(leaf.Issuer)))
}

// daysLeft counts the days a certificate has left as a person does:
// the days it is still valid on, rounded up. It expires in 3 days when
// 2 days and 1 hour are left, and in 1 day in its last hours; 0 once it
// expired within the last 24 hours, -1 once it expired a full day ago and
// up to two, and so on: the negative is the whole days since expiry,
// rounded down. The verdict is judged on this number, so the message and
// the threshold agree: a certificate with days_left=7 is not within
// fail_days=7.
func daysLeft(left time.Duration) int {
	return int(math.Ceil(left.Hours() / 24))
}

// plural writes n and a noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// verifyReason says why a chain or name did not verify, in x509's words
// less its prefix.
func verifyReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return "signed by an unknown authority (pass the CA with ca=FILE, or insecure=true)"
	case errors.As(err, &name):
		return strings.TrimPrefix(name.Error(), "x509: ")
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// shortName is a certificate name's CN, or all of it when it has none.
func shortName(n pkix.Name) string {
	if n.CommonName != "" {
		return "CN=" + n.CommonName
	}
	if s := n.String(); s != "" {
		return s
	}
	return "(empty)"
}

// certNames is a certificate's DNS and IP SANs.
func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// caFile is a ca param: a PEM file of CA certificates on the worker, read
// once, when a check first needs it (the submitter's machine need not
// have it).
type caFile struct {
	path string
	once sync.Once
	pool *x509.CertPool
	err  error
}

// caFile reads a ca param: an absolute path; nil if absent.
func (p params) caFile(name string) (*caFile, error) {
	v, ok := p.m[name]
	if !ok {
		return nil, nil
	}
	if !filepath.IsAbs(v) {
		return nil, p.bad(name, "the absolute path of a PEM file of CA certificates on the workers, e.g. /etc/patrol/ca.pem")
	}
	return &caFile{path: v}, nil
}

func (c *caFile) load() (*x509.CertPool, error) {
	c.once.Do(func() {
		pem, err := os.ReadFile(c.path)
		if err != nil {
			c.err = fmt.Errorf("ca %s: %s; put the CA file on every worker", c.path, startError(err))
			return
		}
		c.pool = x509.NewCertPool()
		if !c.pool.AppendCertsFromPEM(pem) {
			c.err = fmt.Errorf("ca %s: no PEM certificate in it", c.path)
		}
	})
	return c.pool, c.err
}
