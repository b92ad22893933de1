package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/internal/web"
	"github.com/patrol-dev/patrol/queue"
)

// Default listeners of `patrol web`: the console and API, and its metrics.
const (
	webListenAddr  = "127.0.0.1:8470"
	webMetricsAddr = "127.0.0.1:9463"
)

func webCommand() *cli.Command {
	return &cli.Command{
		Name:  "web",
		Usage: "serve the JSON API (/api/v1/) and the web console (/); stateless: run any number behind a load balancer",
		Description: "Reads are open to whoever reaches the listener; submit, cancel and retry need an operator token\n" +
			"from --tokens (make one with `patrol web token NAME`). docs/web.md describes the API, auth and deployment.",
		Flags:       append(webFlags("listen", webListenAddr), observeFlags(webMetricsAddr)...),
		Subcommands: []*cli.Command{webTokenCommand()},
		Action:      runWeb,
	}
}

// webFlags are the flags of the web listener, on `patrol web` (listen
// names the address flag) and `patrol dev` (web-listen).
func webFlags(listen, def string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: listen, Value: def, EnvVars: []string{"PATROL_WEB_LISTEN"},
			Usage: "HOST:PORT serving the console and API (port 0 picks one); a non-loopback address needs --tls-cert/--tls-key or --insecure-listen"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"PATROL_WEB_TLS_CERT"}, Usage: "PEM certificate (chain) the console and API serve HTTPS with"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"PATROL_WEB_TLS_KEY"}, Usage: "PEM private key of --tls-cert"},
		&cli.BoolFlag{Name: "insecure-listen", Usage: "allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only)"},
		&cli.StringFlag{Name: "tokens", EnvVars: []string{"PATROL_WEB_TOKENS"},
			Usage: "tokens file: lines NAME ROLE sha256:HEX (ROLE viewer or operator); without it, writes are refused"},
		&cli.Int64Flag{Name: "max-body", Value: web.DefaultMaxBody, Usage: "largest submit body in bytes, inventory included (other writes: 64 KiB)"},
	}
}

// webListener is a bound web listener and what serves on it.
type webListener struct {
	ln    net.Listener
	tls   *tls.Config
	srv   *web.Server
	https bool
}

// URL is where the console is.
func (l webListener) URL() string {
	scheme := "http"
	if l.https {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/", scheme, l.ln.Addr())
}

// webSetup is the web flags, checked, with the tokens file and TLS
// certificate read.
type webSetup struct {
	flag   string // the address flag: listen or web-listen
	addr   string
	tls    *tls.Config
	tokens *web.Tokens
}

// checkWeb checks the web flags and reads the tokens file and the TLS
// certificate, before anything connects or listens.
func checkWeb(c *cli.Context, listenFlag string) (webSetup, error) {
	ws := webSetup{flag: listenFlag, addr: c.String(listenFlag)}
	certFile, keyFile := c.String("tls-cert"), c.String("tls-key")
	if (certFile == "") != (keyFile == "") {
		return ws, usageErr("give both --tls-cert and --tls-key, or neither")
	}
	if certFile == "" && !web.IsLoopback(ws.addr) && !c.Bool("insecure-listen") {
		return ws, usageErr("--%s %s is not a loopback address and no TLS is configured: tokens would cross the network in clear; "+
			"give --tls-cert and --tls-key, or --insecure-listen if a TLS-terminating proxy is in front", listenFlag, ws.addr)
	}
	if c.Int64("max-body") < 1<<10 {
		return ws, usageErr("--max-body %d: give at least 1024 bytes", c.Int64("max-body"))
	}
	if path := c.String("tokens"); path != "" {
		var err error
		if ws.tokens, err = web.LoadTokens(path); err != nil {
			return ws, usageErr("--tokens: %v", err)
		}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return ws, usageErr("--tls-cert/--tls-key: %v", err)
		}
		ws.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return ws, nil
}

// listenWeb binds the web listener; nothing is served yet.
func listenWeb(c *cli.Context, ws webSetup, q *queue.Queue, o observed, log zerolog.Logger) (webListener, error) {
	srv, err := web.New(web.Config{Queue: q, Tokens: ws.tokens, Log: log, Metrics: metrics.NewWeb(o.reg, web.RouteNames()),
		Version: version, MaxBody: c.Int64("max-body")})
	if err != nil {
		return webListener{}, err
	}
	ln, err := net.Listen("tcp", ws.addr)
	if err != nil {
		return webListener{}, fmt.Errorf("web listener on %s: %w (pick another with --%s; port 0 picks a free one)", ws.addr, err, ws.flag)
	}
	if ws.tokens == nil {
		log.Warn().Msg("web: no --tokens file: the console and API are read-only (writes are refused)")
	}
	return webListener{ln: ln, tls: ws.tls, https: ws.tls != nil, srv: srv}, nil
}

// serve runs the web server until ctx ends; the returned function stops
// it and waits.
func (l webListener) serve(ctx context.Context, log zerolog.Logger) (stop func(), errc <-chan error) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { l.srv.Run(ctx) })
	wg.Go(func() {
		hs := l.srv.HTTPServer(l.tls)
		log.Info().Str("url", l.URL()).Str("addr", l.ln.Addr().String()).Msg("web console listening")
		if err := web.Serve(ctx, hs, l.ln, l.https); err != nil {
			out <- err
		}
	})
	return func() { cancel(); wg.Wait() }, out
}

func runWeb(c *cli.Context) error {
	a := appOf(c)
	if c.Args().Len() > 0 {
		return usageErr("web takes no arguments, got %q (did you mean `patrol web token %s`?)", c.Args().First(), c.Args().First())
	}
	ws, err := checkWeb(c, "listen")
	if err != nil {
		return err
	}
	o, _, closeQ, err := openRole(c, "web")
	if err != nil {
		return err
	}
	defer closeQ()
	l, err := listenWeb(c, ws, o.q, o, a.log)
	if err != nil {
		return err
	}
	started := make(chan struct{})
	close(started)
	stopObs, err := o.serve(c.Context, c, a.log, started, func() error { return nil })
	if err != nil {
		l.ln.Close()
		return err
	}
	defer stopObs()
	stop, errc := l.serve(c.Context, a.log)
	defer stop()
	select {
	case <-c.Context.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func webTokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "print a new random token and its line for the tokens file (the file keeps only the token's SHA-256)",
		ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Value: string(web.RoleOperator), Usage: "viewer (reads, proves who it is) or operator (also submit, cancel, retry)"},
		},
		Action: func(c *cli.Context) error {
			a := appOf(c)
			if c.Args().Len() != 1 {
				return usageErr("token needs exactly one NAME, the token's owner (shown in logs): patrol web token alice --role operator")
			}
			secret, line, err := web.NewToken(c.Args().First(), web.Role(c.String("role")))
			if err != nil {
				return usageErr("%v", err)
			}
			fmt.Fprintln(a.stdout, line)
			fmt.Fprintf(a.stderr, "token (shown once; give it to %s, keep it secret): %s\n"+
				"append the line above to the tokens file, e.g. `patrol web token %s >> tokens.txt`, and restart `patrol web --tokens tokens.txt`\n",
				c.Args().First(), secret, c.Args().First())
			return nil
		},
	}
}

// devWeb starts `patrol dev`'s web server, unless --web-listen is empty.
// Without --tokens it makes an operator token for this run and prints it.
func devWeb(ctx context.Context, c *cli.Context, o observed, log zerolog.Logger) (url, token string, stop func(), errc <-chan error, err error) {
	if c.String("web-listen") == "" {
		return "", "", func() {}, nil, nil
	}
	if c.String("tokens") == "" {
		secret, line, err := web.NewToken("dev", web.RoleOperator)
		if err != nil {
			return "", "", nil, nil, err
		}
		f, err := os.CreateTemp("", "patrol-dev-tokens-")
		if err != nil {
			return "", "", nil, nil, err
		}
		defer os.Remove(f.Name()) // read at start, not needed after
		fmt.Fprintln(f, line)
		f.Close()
		c.Set("tokens", f.Name())
		token = secret
	}
	ws, err := checkWeb(c, "web-listen")
	if err != nil {
		return "", "", nil, nil, err
	}
	l, err := listenWeb(c, ws, o.q, o, log)
	if err != nil {
		return "", "", nil, nil, err
	}
	stopWeb, errc := l.serve(ctx, log)
	return l.URL(), token, stopWeb, errc, nil
}
