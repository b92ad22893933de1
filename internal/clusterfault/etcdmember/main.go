// Command etcdmember runs one member of a multi-member etcd cluster in a
// process of its own, so that the fault suite (internal/clusterfault) can
// kill it with SIGKILL, freeze it with SIGSTOP and restart it from its data
// directory. It is etcd's own server (go.etcd.io/etcd/server/v3/embed),
// with the few settings the suite varies as flags.
//
// It logs JSON lines on stderr, as patrol does: "member ready" once it
// serves clients (a new cluster's members are ready once they have elected
// a leader), "leader changed" each time it learns of a new etcd leader, and
// etcd's own errors. Ports must be given: a member cannot pick its peer
// port itself, since every other member must know it in advance.
//
//	etcdmember --name m1 --data-dir /tmp/m1 \
//	  --listen-client 127.0.0.1:23791 --listen-peer 127.0.0.1:23801 \
//	  --initial-cluster m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/logging"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
}

// options are the member's flags.
type options struct {
	logFormat     string
	etcdLogLevel  string
	name          string
	dataDir       string
	listenClient  string
	listenPeer    string
	cluster       string
	clusterState  string
	quota         int64
	compaction    time.Duration
	noFsync       bool
	startDeadline time.Duration
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("etcdmember", flag.ContinueOnError)
	fs.StringVar(&o.logFormat, "log-format", "json", "json or console")
	fs.StringVar(&o.etcdLogLevel, "etcd-log-level", "error", "the least level of etcd's own lines that are logged: debug, info, warn, error")
	fs.StringVar(&o.name, "name", "", "the member's name, as in --initial-cluster (required)")
	fs.StringVar(&o.dataDir, "data-dir", "", "the member's WAL and database (required); a restart reuses it")
	fs.StringVar(&o.listenClient, "listen-client", "", "HOST:PORT clients connect to (required)")
	fs.StringVar(&o.listenPeer, "listen-peer", "", "HOST:PORT the other members connect to (required)")
	fs.StringVar(&o.cluster, "initial-cluster", "", "every member as NAME=http://HOST:PORT (its peer address), comma separated (required)")
	fs.StringVar(&o.clusterState, "initial-cluster-state", "new", "new, or existing to join a running cluster; ignored once the data dir holds a member")
	fs.Int64Var(&o.quota, "quota-backend-bytes", 0, "the database size past which etcd refuses writes (NOSPACE); 0 is etcd's default, 2 GiB")
	fs.DurationVar(&o.compaction, "auto-compaction-retention", 0, "periodic auto-compaction keeping this much history; 0 turns it off, as etcd ships")
	fs.BoolVar(&o.noFsync, "unsafe-no-fsync", false, "skip fsync: a kill loses nothing (the kernel keeps the writes), a machine crash does")
	fs.DurationVar(&o.startDeadline, "start-timeout", time.Minute, "how long to wait to be ready before giving up")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for flag, v := range map[string]string{"name": o.name, "data-dir": o.dataDir, "listen-client": o.listenClient, "listen-peer": o.listenPeer, "initial-cluster": o.cluster} {
		if v == "" {
			return o, fmt.Errorf("--%s is required", flag)
		}
	}
	for flag, v := range map[string]string{"listen-client": o.listenClient, "listen-peer": o.listenPeer} {
		if _, port, err := net.SplitHostPort(v); err != nil || port == "0" {
			return o, fmt.Errorf("--%s %q: want HOST:PORT with a port chosen in advance", flag, v)
		}
	}
	return o, nil
}

func run(args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	log, err := logging.New(logging.Config{Format: logging.Format(o.logFormat)})
	if err != nil {
		return err
	}
	log = log.With().Str("member", o.name).Logger()
	etcdLevel, err := zapcore.ParseLevel(o.etcdLogLevel)
	if err != nil {
		return fmt.Errorf("--etcd-log-level: %w", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	e, err := embed.StartEtcd(config(o, log, etcdLevel))
	if err != nil {
		// A port taken by another process ends here: the caller picks others.
		log.Error().Err(err).Msg("member failed to start")
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		log.Error().Err(err).Msg("member failed to start")
		return err
	case <-sigs:
		return nil
	case <-time.After(o.startDeadline):
		log.Error().Dur("waited", o.startDeadline).Msg("member not ready in time")
		return errors.New("member not ready in time")
	}
	log.Info().Str("id", e.Server.MemberID().String()).Str("client", o.listenClient).
		Str("peer", o.listenPeer).Str("leader", e.Server.Leader().String()).Msg("member ready")

	for {
		select {
		case <-e.Server.LeaderChangedNotify():
			// Notified once the member has recorded the new leader.
			log.Info().Str("leader", e.Server.Leader().String()).Msg("leader changed")
		case err := <-e.Err():
			log.Error().Err(err).Msg("member stopped on an error")
			return err
		case <-sigs:
			return nil
		}
	}
}

// config is the embedded server's configuration for o.
func config(o options, log zerolog.Logger, etcdLevel zapcore.Level) *embed.Config {
	ec := embed.NewConfig()
	ec.Name = o.name
	ec.Dir = o.dataDir
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logging.Zap(log.With().Str("component", "etcd").Logger(), etcdLevel))
	ec.UnsafeNoFsync = o.noFsync
	ec.QuotaBackendBytes = o.quota
	if o.compaction > 0 {
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = o.compaction.String()
	}
	client := url.URL{Scheme: "http", Host: o.listenClient}
	peer := url.URL{Scheme: "http", Host: o.listenPeer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.InitialCluster = o.cluster
	ec.ClusterState = o.clusterState
	ec.InitialClusterToken = "clusterfault-" + strings.ReplaceAll(o.cluster, ",", "+")
	return ec
}
