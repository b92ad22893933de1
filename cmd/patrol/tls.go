package main

// Connecting to a production etcd: TLS (verifying etcd's certificate,
// presenting a client certificate) and etcd's user/password authentication,
// and what to tell the operator when either is set up wrong.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// securityFlags are the global flags for TLS and etcd authentication.
func securityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cacert", EnvVars: []string{"PATROL_CACERT"}, TakesFile: true,
			Usage: "CA certificate (PEM) that signed etcd's server certificate; turns TLS on (default: the system's CAs for https:// endpoints)"},
		&cli.StringFlag{Name: "cert", EnvVars: []string{"PATROL_CERT"}, TakesFile: true,
			Usage: "client certificate (PEM) for an etcd that requires one; turns TLS on; needs --key"},
		&cli.StringFlag{Name: "key", EnvVars: []string{"PATROL_KEY"}, TakesFile: true,
			Usage: "private key (PEM) of --cert"},
		&cli.StringFlag{Name: "user", EnvVars: []string{"PATROL_USER"},
			Usage: "etcd user name, for an etcd with authentication on; needs --password"},
		&cli.StringFlag{Name: "password", EnvVars: []string{"PATROL_PASSWORD"},
			Usage: "password of --user (prefer PATROL_PASSWORD or --config: other users can read a command line)"},
	}
}

// security is what the flags ask for: TLS files and an etcd user.
type security struct {
	cacert, cert, key string
	user, password    string
}

// securityOf reads the flags and refuses a half-given pair.
func securityOf(c *cli.Context) (security, error) {
	s := security{
		cacert: c.String("cacert"), cert: c.String("cert"), key: c.String("key"),
		user: c.String("user"), password: c.String("password"),
	}
	switch {
	case s.cert != "" && s.key == "":
		return s, usageErr("--cert %s needs its private key: pass --key FILE too", s.cert)
	case s.key != "" && s.cert == "":
		return s, usageErr("--key %s needs its certificate: pass --cert FILE too", s.key)
	case s.user != "" && s.password == "":
		return s, usageErr("--user %s needs a password: pass --password or set PATROL_PASSWORD", s.user)
	case s.password != "" && s.user == "":
		return s, usageErr("--password needs a user name: pass --user NAME or set PATROL_USER")
	}
	return s, nil
}

// wantsTLS reports whether the flags turn TLS on. An https:// endpoint turns it
// on too, verified against the system's CAs (etcd's client does that).
func (s security) wantsTLS() bool { return s.cacert != "" || s.cert != "" }

// apply sets cfg's TLS and credentials. It reads the files now, so that a
// wrong path or a file of the wrong kind is named before anything is dialed.
func (s security) apply(cfg *clientv3.Config) error {
	cfg.Username, cfg.Password = s.user, s.password
	if !s.wantsTLS() {
		return nil
	}
	for _, ep := range cfg.Endpoints {
		if rest, ok := strings.CutPrefix(ep, "http://"); ok {
			return usageErr("--endpoints %s is plain HTTP, but --cacert/--cert ask for TLS: write https://%s, or leave the scheme out", ep, rest)
		}
	}
	if s.cacert != "" {
		if err := checkCA(s.cacert); err != nil {
			return err
		}
	}
	if s.cert != "" {
		if err := checkKeyPair(s.cert, s.key); err != nil {
			return err
		}
	}
	tc, err := transport.TLSInfo{TrustedCAFile: s.cacert, CertFile: s.cert, KeyFile: s.key}.ClientConfig()
	if err != nil {
		return fmt.Errorf("TLS settings (--cacert, --cert, --key): %w", err)
	}
	cfg.TLS = tc
	return nil
}

// readFlagFile reads the file a flag names; the error names both.
func readFlagFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, usageErr("cannot read --%s %s: %v; check the path and its permissions", flag, path, err)
	}
	return b, nil
}

// checkCA requires at least one PEM certificate in the --cacert file: etcd's
// loader accepts a file with none, and every handshake would then fail.
func checkCA(path string) error {
	rest, err := readFlagFile("cacert", path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return usageErr("--cacert %s: %v; pass the CA certificate in PEM", path, err)
		}
		n++
	}
	if n == 0 {
		return usageErr("--cacert %s holds no PEM certificate: pass the CA certificate (-----BEGIN CERTIFICATE-----) that signed etcd's server certificate", path)
	}
	return nil
}

// checkKeyPair requires --cert and --key to be a certificate and its key.
func checkKeyPair(certPath, keyPath string) error {
	cert, err := readFlagFile("cert", certPath)
	if err != nil {
		return err
	}
	key, err := readFlagFile("key", keyPath)
	if err != nil {
		return err
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return usageErr("--cert %s and --key %s are not a certificate and its key (%v): pass the PEM certificate and the private key issued with it", certPath, keyPath, err)
	}
	return nil
}

// explain turns a failed connection into what to do about it: an
// authentication failure, a TLS mistake found by handshaking with the
// endpoints again, or else an etcd that does not answer.
func (s security) explain(ctx context.Context, cfg clientv3.Config, err error) error {
	eps := strings.Join(cfg.Endpoints, ",")
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("etcd at %s refused user %q: the user name or password is wrong; check --user and --password (PATROL_USER, PATROL_PASSWORD)", eps, s.user)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("etcd at %s has authentication on: pass --user and --password (or set PATROL_USER and PATROL_PASSWORD)", eps)
	}
	if !errors.As(err, new(rpctypes.EtcdError)) { // else etcd answered: TLS works
		if terr := s.diagnoseTLS(ctx, cfg.Endpoints, cfg.TLS, min(cfg.DialTimeout, diagnoseTimeout)); terr != nil {
			return terr
		}
	}
	return fmt.Errorf("cannot reach etcd at %s within %s (%v): start one with `patrol dev` or point --endpoints at your cluster",
		eps, cfg.DialTimeout, err)
}

const (
	// diagnoseTimeout bounds the handshakes explain makes after a failure.
	diagnoseTimeout = 2 * time.Second
	// alertWait is how long a diagnosis waits after a handshake for the
	// server to refuse the client's certificate.
	alertWait = time.Second
)

// diagnoseTLS handshakes with every endpoint as the client would and returns
// the first mistake it finds that waiting will not fix: a CA that does not
// match etcd's certificate, a client certificate missing or refused, TLS on
// one side only. It returns nil when it finds none (etcd down, a firewall).
//
// It runs only after the client has failed: etcd's client reports nothing
// but a deadline, and a handshake on every command would fill etcd's logs.
func (s security) diagnoseTLS(ctx context.Context, eps []string, tc *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	found := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Go(func() { found[i] = s.diagnoseEndpoint(ctx, ep, tc) })
	}
	wg.Wait()
	for _, err := range found {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s security) diagnoseEndpoint(ctx context.Context, ep string, tc *tls.Config) error {
	scheme, addr := "", ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return nil
		}
		scheme, addr = u.Scheme, u.Host
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || (scheme != "" && scheme != "http" && scheme != "https") {
		return nil // unix sockets and the like: nothing to say
	}
	plain := tc == nil && scheme != "https"
	var cfg *tls.Config
	switch {
	case tc != nil:
		cfg = tc.Clone()
	case plain:
		// Only to learn whether etcd speaks TLS: nothing is sent over it.
		cfg = &tls.Config{InsecureSkipVerify: true}
	default: // https:// and no --cacert: the system's CAs, as etcd's client
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return s.handshakeError(addr, plain, true, err)
	}
	defer conn.Close()
	if plain {
		return servesTLS(addr)
	}
	// Under TLS 1.3 a server checks the client certificate after the
	// handshake and answers a bad one with an alert at once; one it accepts
	// waits for the client to speak.
	wait := time.Now().Add(alertWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
		wait = dl
	}
	conn.SetReadDeadline(wait)
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return s.handshakeError(addr, plain, false, err)
	}
	return nil
}

// handshakeError says what an error from a TLS connection to etcd at addr
// means (in the handshake, or reading just after it), or returns nil if it
// means nothing certain.
func (s security) handshakeError(addr string, plain, inHandshake bool, err error) error {
	var (
		verr   *tls.CertificateVerificationError
		remote *net.OpError
		rec    tls.RecordHeaderError
	)
	isAlert := errors.As(err, &remote) && remote.Op == "remote error"
	if plain {
		if isAlert { // a TLS server, refusing a handshake without a certificate
			return servesTLS(addr)
		}
		return nil
	}
	switch {
	case errors.As(err, &verr):
		var (
			unknownCA x509.UnknownAuthorityError
			hostname  x509.HostnameError
			invalid   x509.CertificateInvalidError
		)
		switch {
		case errors.As(verr.Err, &unknownCA) && s.cacert != "":
			return fmt.Errorf("the CA in --cacert %s does not match etcd's server certificate at %s (%v): check --cacert", s.cacert, addr, verr.Err)
		case errors.As(verr.Err, &unknownCA):
			return fmt.Errorf("etcd's server certificate at %s is not signed by a CA this system trusts (%v): pass the cluster's CA with --cacert", addr, verr.Err)
		case errors.As(verr.Err, &hostname):
			return fmt.Errorf("etcd's server certificate at %s is not valid for that address (%v): write --endpoints with a name or IP the certificate lists", addr, verr.Err)
		case errors.As(verr.Err, &invalid):
			return fmt.Errorf("etcd's server certificate at %s is not valid (%v): renew it, or check this machine's clock", addr, verr.Err)
		}
		return fmt.Errorf("cannot verify etcd's server certificate at %s (%v): check --cacert", addr, verr.Err)
	case inHandshake && (errors.As(err, &rec) || errors.Is(err, io.EOF)):
		// A plain etcd hangs up on a TLS hello.
		return fmt.Errorf("etcd at %s does not answer TLS (%v): if it serves plain text, leave out --cacert, --cert and --key; else point --endpoints at its TLS port", addr, err)
	case isAlert && strings.Contains(remote.Err.Error(), "certificate") && s.cert == "":
		return fmt.Errorf("etcd at %s requires a client certificate (%v): pass --cert and --key", addr, err)
	case isAlert && strings.Contains(remote.Err.Error(), "certificate"):
		return fmt.Errorf("etcd at %s refused the client certificate --cert %s (%v): use one signed by the CA etcd trusts for clients (its --trusted-ca-file)", addr, s.cert, err)
	case isAlert:
		return fmt.Errorf("etcd at %s ended the TLS handshake (%v): check --cacert, --cert and --key against the cluster's TLS settings", addr, err)
	}
	return nil
}

func servesTLS(addr string) error {
	return fmt.Errorf("etcd at %s serves TLS: write --endpoints https://%s and pass --cacert (and --cert and --key if it requires client certificates)", addr, addr)
}
