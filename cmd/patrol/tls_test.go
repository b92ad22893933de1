package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rs/zerolog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/logging"
)

// etcd starts a member of the script's own, for what the shared one cannot
// show: TLS and authentication.
//
//	etcd [-tls DIR] [-auth USER:PASSWORD] NAME
//
// It sets $NAME_ENDPOINT to the member's HOST:PORT and stops the member when
// the script ends. With -tls the member serves only TLS and requires client
// certificates; DIR receives, generated now, its CA (ca.pem), a client
// certificate that CA signed (client.pem, client-key.pem), and an unrelated
// CA with a client certificate of its own (other-ca.pem, other.pem,
// other-key.pem). With -auth the member has authentication on, and USER may
// read and write under $PATROL_PREFIX/ and nowhere else.
func (s scripts) etcd(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: etcd [-tls DIR] [-auth USER:PASSWORD] NAME"
	if neg {
		ts.Fatalf("unsupported: ! etcd")
	}
	var pkiDir, auth string
	for len(args) > 2 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-tls":
			pkiDir = ts.MkAbs(args[1])
		case "-auth":
			auth = args[1]
		default:
			ts.Fatalf(usage)
		}
		args = args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf(usage)
	}
	dataDir, err := os.MkdirTemp("", "patrol-script-etcd-*")
	ts.Check(err)
	ts.Defer(func() { os.RemoveAll(dataDir) })
	// Every command authenticates, and etcd checks the password with
	// bcrypt: at its default cost, under the race detector on a busy
	// machine, that alone can take the 5 s a command has to connect.
	cfg := etcdserver.Config{DataDir: dataDir, NoFsync: true, BcryptCost: uint(bcrypt.MinCost), Log: zerolog.Nop()}
	var clientTLS transport.TLSInfo
	if pkiDir != "" {
		ts.Check(writeTestPKI(pkiDir))
		in := func(name string) string { return filepath.Join(pkiDir, name) }
		cfg.ClientTLS = transport.TLSInfo{
			CertFile: in("server.pem"), KeyFile: in("server-key.pem"),
			TrustedCAFile: in("ca.pem"), ClientCertAuth: true,
		}
		clientTLS = transport.TLSInfo{CertFile: in("client.pem"), KeyFile: in("client-key.pem"), TrustedCAFile: in("ca.pem")}
	}
	srv, err := etcdserver.Start(cfg)
	ts.Check(err)
	ts.Defer(srv.Close)
	if auth != "" {
		user, password, ok := strings.Cut(auth, ":")
		if !ok || user == "" || user == "root" || password == "" {
			ts.Fatalf("etcd: -auth wants USER:PASSWORD, USER not root")
		}
		ts.Check(enableAuth(srv.Endpoint(), clientTLS, user, password, ts.Getenv("PATROL_PREFIX")+"/"))
	}
	ts.Setenv(args[0]+"_ENDPOINT", srv.Endpoint())
}

// enableAuth turns authentication on at endpoint, with a root user (etcd
// requires one) and user, whose role may read and write under prefix only.
func enableAuth(endpoint string, clientTLS transport.TLSInfo, user, password, prefix string) error {
	cfg := clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: waitTimeout,
		Logger:      logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	}
	if !clientTLS.Empty() {
		tc, err := clientTLS.ClientConfig()
		if err != nil {
			return err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", rand.Text()); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, user); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, user, password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, user, user); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("enable auth: %w", err)
		}
	}
	return nil
}

// writeTestPKI writes into dir a CA, a server certificate it signed for
// 127.0.0.1, a client certificate it signed, and an unrelated CA with a
// client certificate of its own. Keys are made afresh: none is committed.
func writeTestPKI(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, err := newTestCA(dir, "ca")
	if err != nil {
		return err
	}
	other, err := newTestCA(dir, "other-ca")
	if err != nil {
		return err
	}
	// etcd's gateway dials the member with the server certificate, so it
	// serves as a client certificate too.
	if err := ca.issue(dir, "server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	if err := ca.issue(dir, "client", x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	return other.issue(dir, "other", x509.ExtKeyUsageClientAuth)
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(dir, name string) (testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testCA{}, err
	}
	tmpl := certTemplate(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return testCA{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return testCA{}, err
	}
	return testCA{cert: cert, key: key}, writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
}

// issue writes NAME.pem and NAME-key.pem: a certificate ca signed, valid
// for 127.0.0.1, for usage.
func (ca testCA) issue(dir, name string, usage ...x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := certTemplate(name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = usage
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", keyDER)
}

func certTemplate(name string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
