package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/queue"
)

// Exit codes, the same for every command.
const (
	exitOK          = 0
	exitError       = 1 // usage or system error
	exitFailedHosts = 2 // the batch finished and some hosts did not pass
	exitInterrupted = 130
)

// exitErr carries an exit code; an empty message prints nothing.
type exitErr struct {
	code int
	msg  string
}

func (e exitErr) Error() string { return e.msg }

func exitCode(err error) int {
	var e exitErr
	if errors.As(err, &e) {
		return e.code
	}
	return exitError
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// app is what every command shares, set up before a command runs.
type app struct {
	stdout, stderr io.Writer
	log            zerolog.Logger
}

const appKey = "patrol-app"

func appOf(c *cli.Context) *app { return c.App.Metadata[appKey].(*app) }

// Run runs the patrol command line with args (args[0] is the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cliApp := newApp(stdout, stderr)
	return cliApp.RunContext(ctx, interleaveArgs(cliApp, args))
}

// newApp builds the command line: every command, flag and its help.
func newApp(stdout, stderr io.Writer) *cli.App {
	a := &app{stdout: stdout, stderr: stderr, log: zerolog.Nop()}
	cliApp := &cli.App{
		Name:  "patrol",
		Usage: "run checks across a fleet through a distributed job queue on etcd",
		Description: "Patrol shards an inventory of hosts into tasks stored in etcd; an elected scheduler\n" +
			"hands them to a fleet of stateless workers, and every result is committed exactly once.\n" +
			"Start with `patrol dev --demo`.",
		Version:                   version,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		HideHelpCommand:           true,
		Suggest:                   true,
		DisableSliceFlagSeparator: true,
		Metadata:                  map[string]any{appKey: a},
		ExitErrHandler:            func(*cli.Context, error) {},
		Flags:                     globalFlags(),
		Before: func(c *cli.Context) error {
			if err := applyConfig(c); err != nil {
				return err
			}
			l, err := logging.New(logging.Config{
				Level:  c.String("log-level"),
				Format: logging.Format(c.String("log-format")),
				Out:    stderr,
			})
			if err != nil {
				return err
			}
			a.log = l
			return nil
		},
		Commands: []*cli.Command{
			devCommand(),
			schedulerCommand(),
			workerCommand(),
			submitCommand(),
			scheduleCommand(),
			inventoryCommand(),
			resultsCommand(),
			statusCommand(),
			watchCommand(),
			batchesCommand(),
			cancelCommand(),
			deleteCommand(),
			retryCommand(),
			spaceCommand(),
			workersCommand(),
			leaderCommand(),
			webCommand(),
		},
	}
	for _, cmd := range cliApp.Commands {
		cmd.OnUsageError = usageError
	}
	cliApp.OnUsageError = usageError
	cliApp.EnableBashCompletion = true
	cliApp.Commands = append(cliApp.Commands, completionCommand(cliApp))
	return cliApp
}

func globalFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "endpoints", Value: "127.0.0.1:2379", EnvVars: []string{"PATROL_ENDPOINTS"},
			Usage: "etcd endpoints, comma separated"},
		&cli.StringFlag{Name: "prefix", Value: "/patrol", EnvVars: []string{"PATROL_PREFIX"},
			Usage: "etcd key prefix all of Patrol's keys live under"},
		&cli.DurationFlag{Name: "dial-timeout", Value: 5 * time.Second, EnvVars: []string{"PATROL_DIAL_TIMEOUT"},
			Usage: "how long to wait for etcd to answer"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"PATROL_LOG_LEVEL"},
			Usage: "trace, debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", EnvVars: []string{"PATROL_LOG_FORMAT"},
			Usage: "json or console (default: console when stderr is a terminal, else json)"},
		outputFlag(),
		configFlag(),
	}, securityFlags()...)
}

// outputFlag is -o/--output. It is global and also on each command that
// prints, so both `patrol -o json results B` and `patrol results B -o json` work.
//
// formats are the formats the command takes, for its usage text; none for
// the global flag, whose usage says that commands differ.
func outputFlag(formats ...string) cli.Flag {
	usage := "output format: table or json; results also takes wide, yaml and csv"
	if len(formats) > 0 {
		usage = "output format: " + strings.Join(formats, ", ")
		if i := strings.LastIndex(usage, ", "); i >= 0 {
			usage = usage[:i] + " or " + usage[i+2:]
		}
	}
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", EnvVars: []string{"PATROL_OUTPUT"},
		Usage: usage}
}

// outputFormat returns -o, checked against what the command supports.
func outputFormat(c *cli.Context, allowed ...string) (string, error) {
	o := c.String("output") // the environment or the default
	for _, lc := range c.Lineage() {
		if lc.IsSet("output") {
			o = lc.String("output")
			break
		}
	}
	for _, a := range allowed {
		if o == a {
			return o, nil
		}
	}
	return "", fmt.Errorf("unknown output format %q: use one of %s", o, strings.Join(allowed, ", "))
}

func endpointsOf(c *cli.Context) []string {
	var eps []string
	for _, e := range strings.Split(c.String("endpoints"), ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

// connect dials etcd and checks that it answers, so that an unreachable
// etcd, or one that refuses Patrol's TLS or credentials, is one clear error
// rather than a hang.
func connect(ctx context.Context, c *cli.Context, log zerolog.Logger) (*clientv3.Client, error) {
	eps := endpointsOf(c)
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoints: pass --endpoints HOST:PORT or set PATROL_ENDPOINTS")
	}
	sec, err := securityOf(c)
	if err != nil {
		return nil, err
	}
	timeout := c.Duration("dial-timeout")
	// While probing, the client's retry warnings would only repeat the one
	// clear error below; after it, they are worth seeing.
	var probing atomic.Bool
	probing.Store(true)
	clog := log.With().Str("component", "etcd-client").Logger().Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		if probing.Load() || ctx.Err() != nil { // an interrupted command's retries are noise
			e.Discard()
		}
	}))
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: timeout, // with --user, New authenticates within it
		Logger:      logging.Zap(clog, zapcore.WarnLevel),
		Context:     ctx,
	}
	keepalive(&cfg)
	if err := sec.apply(&cfg); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, new(rpctypes.EtcdError)) {
		return nil, fmt.Errorf("etcd endpoints %s: %w", strings.Join(eps, ","), err)
	}
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = cli.Get(pctx, "health-probe", clientv3.WithCountOnly())
		cancel()
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			err = nil // etcd answered; --user may read only under --prefix
		}
		if err != nil {
			cli.Close()
		}
	}
	probing.Store(false)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, sec.explain(ctx, cfg, err)
	}
	return cli, nil
}

// Client keepalive. A member that hangs (a disk stall, a VM pause,
// SIGSTOP) keeps its TCP connections open; a ping that goes unanswered
// for keepaliveTimeout closes such a connection. grpc-go pings no more
// often than every 10 s, so this alone leaves a hung member 12 s to
// waste: the long-running roles also probe each member and stop using
// one that does not answer within about 2 s (internal/failover).
// Pinging more often than etcd's --grpc-keepalive-min-time (5 s by
// default) would make etcd close the connection ("too many pings").
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 2 * time.Second
)

// keepalive turns on the client's gRPC keepalive.
func keepalive(cfg *clientv3.Config) {
	cfg.DialKeepAliveTime = keepaliveTime
	cfg.DialKeepAliveTimeout = keepaliveTimeout
	cfg.PermitWithoutStream = true
}

// openQueue connects and returns the queue under --prefix.
func openQueue(ctx context.Context, c *cli.Context) (*queue.Queue, func(), error) {
	a := appOf(c)
	cli, err := connect(ctx, c, a.log)
	if err != nil {
		return nil, nil, err
	}
	return queue.New(cli, c.String("prefix")), func() { cli.Close() }, nil
}

// defaultID names a process: host name and PID.
func defaultID(role string) string {
	h, err := os.Hostname()
	if err != nil {
		h = "unknown"
	}
	return fmt.Sprintf("%s-%s-%d", role, h, os.Getpid())
}

// badValue matches the flag package's word on a value it cannot parse.
var badValue = regexp.MustCompile(`^invalid value "(.*)" for flag -([A-Za-z0-9-]+): (.*)$`)

// usageError replaces urfave/cli's full help dump on a bad flag with one line.
func usageError(c *cli.Context, err error, _ bool) error {
	if m := badValue.FindStringSubmatch(err.Error()); m != nil {
		if want := valueKind(c, m[2]); want != "" {
			err = fmt.Errorf("--%s %q: not %s", m[2], m[1], want)
		} else {
			err = fmt.Errorf("--%s %q: %s", m[2], m[1], m[3])
		}
	}
	if c.Command != nil && c.Command.Name != "" && (c.App == nil || c.Command.Name != c.App.Name) {
		return usageErr("%s: %v; see `patrol %s --help`", c.Command.Name, err, c.Command.Name)
	}
	return usageErr("%v; see `patrol --help`", err)
}

// valueKind says what a flag takes, for an error about a value it could
// not parse: "" when the flag is unknown here.
func valueKind(c *cli.Context, name string) string {
	var flags []cli.Flag
	if c.Command != nil {
		flags = append(flags, c.Command.Flags...)
	}
	if c.App != nil {
		flags = append(flags, c.App.Flags...)
	}
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f.(type) {
		case *cli.DurationFlag:
			return "a duration: write it like 500ms, 5s or 2m"
		case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag:
			return "a whole number"
		case *cli.Float64Flag:
			return "a number"
		case *cli.BoolFlag:
			return "true or false"
		}
	}
	return ""
}

// usageErr is a mistake on the command line.
func usageErr(format string, args ...any) error {
	return exitErr{code: exitError, msg: fmt.Sprintf(format, args...)}
}
