package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// Config configures a Server. Defaults are filled by New.
type Config struct {
	// Queue is where the server reads and writes. Required.
	Queue *queue.Queue
	// Tokens are the accepted tokens; nil: every write is refused.
	Tokens *Tokens
	// Log receives request and follower log lines (no tokens, ever).
	Log zerolog.Logger
	// Metrics, if set, counts requests by route and code.
	Metrics *metrics.Web
	// Version is shown in the console's footer.
	Version string
	// MaxBody bounds a submit's body, inventory included (default 32 MiB).
	// Other writes take at most 64 KiB.
	MaxBody int64
	// RequestTimeout bounds the etcd work of one request (default 30s; a
	// submit gets four times it).
	RequestTimeout time.Duration
	// FollowIdle is how long a batch's follower outlives its last client
	// (default 1m).
	FollowIdle time.Duration
}

// Defaults.
const (
	DefaultMaxBody        = 32 << 20
	DefaultRequestTimeout = 30 * time.Second
	DefaultFollowIdle     = time.Minute
	smallBody             = 64 << 10
)

// Server serves the API and the console.
type Server struct {
	q       *queue.Queue
	tokens  *Tokens
	log     zerolog.Logger
	metrics *metrics.Web
	cfg     Config
	hub     *hub
	handler http.Handler
	routes  []route

	specs    sync.Map      // batch ID → queue.BatchSpec
	stopping chan struct{} // closed when the http.Server shuts down
	stopOnce sync.Once
}

// New returns a server over cfg.Queue. Run starts its background work
// (followers); Handler serves requests.
func New(cfg Config) (*Server, error) {
	if cfg.Queue == nil {
		return nil, errors.New("web: Config.Queue is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.FollowIdle <= 0 {
		cfg.FollowIdle = DefaultFollowIdle
	}
	s := &Server{q: cfg.Queue, tokens: cfg.Tokens, log: cfg.Log, metrics: cfg.Metrics, cfg: cfg, stopping: make(chan struct{})}
	s.hub = newHub(cfg.Queue, cfg.Log, cfg.FollowIdle, cfg.Metrics)
	s.routes = s.allRoutes()
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.pattern, s.wrap(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		writeError(w, r, &apiError{http.StatusNotFound, fmt.Sprintf("no such page or API route: %s %s; the API is under /api/v1/ (see docs/openapi.yaml)", r.Method, r.URL.Path)})
		s.observe("other", http.StatusNotFound, time.Since(start))
	})
	s.handler = mux
	return s, nil
}

// RouteNames are the route label's values (every route's pattern), for
// metrics.NewWeb.
func RouteNames() []string {
	s := &Server{}
	var out []string
	for _, r := range s.allRoutes() {
		out = append(out, r.pattern)
	}
	return append(out, "other")
}

// Handler serves the API and the console.
func (s *Server) Handler() http.Handler { return s.handler }

// Run keeps the server's followers until ctx ends, then stops them.
func (s *Server) Run(ctx context.Context) { s.hub.run(ctx) }

func (s *Server) observe(route string, code int, d time.Duration) {
	if s.metrics != nil {
		s.metrics.Request(route, code, d)
	}
}

// HTTPServer returns an http.Server for the server's handler with
// Patrol's timeouts. A live-progress stream lifts its write deadline
// itself, and ends when the http.Server shuts down.
func (s *Server) HTTPServer(tlsCfg *tls.Config) *http.Server {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a large inventory's upload
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	srv.RegisterOnShutdown(s.closeStreams)
	return srv
}

// closeStreams ends every live-progress stream (the http.Server is
// shutting down, and waits for them).
func (s *Server) closeStreams() { s.stopOnce.Do(func() { close(s.stopping) }) }

// Serve serves srv on ln until ctx ends, then shuts down, giving requests
// in flight up to 5s (live-progress streams end at once).
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, tlsOn bool) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if tlsOn {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("web listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// IsLoopback reports whether addr (HOST:PORT) listens on loopback only.
// An empty host or a wildcard address listens on every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
