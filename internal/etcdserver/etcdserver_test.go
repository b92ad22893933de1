package etcdserver

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartServesAndKeepsDataAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	put := func(key, val string) string {
		srv, err := Start(Config{DataDir: dir, NoFsync: true, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		old := ""
		if len(resp.Kvs) == 1 {
			old = string(resp.Kvs[0].Value)
		}
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
		return old
	}
	if got := put("k", "first"); got != "" {
		t.Fatalf("fresh member has k=%q", got)
	}
	if got := put("k", "second"); got != "first" {
		t.Fatalf("after restart k=%q, want first", got)
	}
}

func TestStartRefusesABusyAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(Config{DataDir: t.TempDir(), ClientAddr: l.Addr().String(), Log: zerolog.Nop()})
	if err == nil {
		t.Fatal("started on an address already in use")
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Fatal("no data dir accepted")
	}
	if _, err := Start(Config{DataDir: t.TempDir(), ClientAddr: "nonsense"}); err == nil {
		t.Fatal("client address without port accepted")
	}
}

func TestStartServesTLSOnly(t *testing.T) {
	dir := t.TempDir()
	// SelfCert's certificate is its own CA, valid for 127.0.0.1.
	info, err := transport.SelfCert(zap.NewNop(), filepath.Join(dir, "pki"), []string{"127.0.0.1:0"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Start(Config{DataDir: filepath.Join(dir, "data"), NoFsync: true, Log: zerolog.Nop(),
		ClientTLS: transport.TLSInfo{CertFile: info.CertFile, KeyFile: info.KeyFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func(tc *tls.Config, timeout time.Duration) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, TLS: tc, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err = cli.Get(ctx, "k")
		return err
	}
	tc, err := transport.TLSInfo{TrustedCAFile: info.CertFile}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := get(tc, 10*time.Second); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := get(nil, 500*time.Millisecond); err == nil {
		t.Fatal("a plain-text client was served")
	}
}
