// Package etcdserver runs a real single-member etcd inside the Patrol process,
// for `patrol dev` and for tests. It is etcd's own server
// (go.etcd.io/etcd/server/v3/embed), not a fake: every transaction, lease and
// watch behaves as in production.
package etcdserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/logging"
)

// Config says where the member keeps its data and listens.
type Config struct {
	// DataDir holds the member's WAL and database. Required.
	DataDir string
	// ClientAddr is the HOST:PORT clients connect to. Port 0 picks a free
	// port; read it back from Server.Endpoint. Default 127.0.0.1:0.
	ClientAddr string
	// ClientTLS, when its CertFile and KeyFile are set, makes the member
	// serve clients over TLS only (clients dial https://HOST:PORT). Set
	// TrustedCAFile and ClientCertAuth to require client certificates
	// signed by that CA, as production clusters do. Default: plain TCP.
	ClientTLS transport.TLSInfo
	// NoFsync turns fsync off. Only for tests: a crash loses data.
	NoFsync bool
	// CompactionRetention is how much history auto-compaction keeps.
	// Default 1h. etcd ships with compaction off; a queue that never
	// compacts fills its quota.
	CompactionRetention time.Duration
	// QuotaBackendBytes is the database size past which etcd raises its
	// NOSPACE alarm and takes reads and deletes only. Default 0: etcd's
	// own (2 GiB).
	QuotaBackendBytes int64
	// BcryptCost is the cost of hashing passwords when authentication is
	// on. Default 0: etcd's own (10). Tests that authenticate in every
	// command lower it: under the race detector each check costs seconds.
	BcryptCost uint
	// Log receives the server's warnings and errors.
	Log zerolog.Logger
	// StartTimeout bounds how long Start waits for the member to be ready.
	// Default 60s.
	StartTimeout time.Duration
}

// Server is a running embedded member.
type Server struct {
	etcd     *embed.Etcd
	endpoint string
	closing  atomic.Bool
}

// ErrStartTimeout is returned when the member does not become ready in time.
var ErrStartTimeout = errors.New("etcdserver: member did not become ready in time")

// Start starts a member and waits until it serves clients.
func Start(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("etcdserver: DataDir is required")
	}
	if cfg.ClientAddr == "" {
		cfg.ClientAddr = "127.0.0.1:0"
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = time.Hour
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if _, _, err := net.SplitHostPort(cfg.ClientAddr); err != nil {
		return nil, fmt.Errorf("invalid client address %q: want HOST:PORT, e.g. 127.0.0.1:2379", cfg.ClientAddr)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}

	ec := embed.NewConfig()
	ec.Name = "patrol-dev"
	ec.Dir = cfg.DataDir
	ec.LogLevel = "warn"
	// The member's warnings in a single-node setup (one port for gRPC and
	// HTTP, simple auth tokens) are not actionable here: route errors only,
	// and nothing once Close has begun (etcd logs its listeners closing as
	// errors).
	srv := &Server{}
	quiet := cfg.Log.With().Str("component", "etcd").Logger().Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		if srv.closing.Load() {
			e.Discard()
		}
	}))
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logging.Zap(quiet, zapcore.ErrorLevel))
	ec.UnsafeNoFsync = cfg.NoFsync
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	if cfg.BcryptCost != 0 {
		ec.BcryptCost = cfg.BcryptCost
	}
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()

	client := url.URL{Scheme: "http", Host: cfg.ClientAddr}
	if !cfg.ClientTLS.Empty() {
		client.Scheme = "https"
		ec.ClientTLSInfo = cfg.ClientTLS
	}
	// The peer listener is unused by a single member, but etcd requires one;
	// port 0 keeps parallel test packages from colliding.
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	ec.ListenClientUrls = []url.URL{client}
	ec.AdvertiseClientUrls = []url.URL{client}
	ec.ListenPeerUrls = []url.URL{peer}
	ec.AdvertisePeerUrls = []url.URL{peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd on %s: %w", cfg.ClientAddr, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	case <-time.After(cfg.StartTimeout):
		e.Close()
		return nil, ErrStartTimeout
	}
	srv.etcd, srv.endpoint = e, e.Clients[0].Addr().String()
	return srv, nil
}

// Endpoint is the HOST:PORT clients dial (with TLS if Config.ClientTLS is set).
func (s *Server) Endpoint() string { return s.endpoint }

// Err delivers a fatal server error, if one happens while running.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member and waits for it to shut down.
func (s *Server) Close() {
	s.closing.Store(true)
	s.etcd.Close()
}
