package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
)

// TestScript runs the golden scripts in testdata/script: the real patrol
// command, as an operator meets it, against the shared embedded etcd. Each
// script gets PATROL_ENDPOINTS and a PATROL_PREFIX of its own, and these
// commands besides testscript's own:
//
//	exits CODE PROG [ARGS...]   run PROG like exec and require exit status CODE
//	etcdkeys [-rev]             print the keys under $PATROL_PREFIX/, relative to
//	                            it, one a line (-rev: with their mod revision)
//	listen [-http STATUS] NAME  start a loopback TCP listener that accepts every
//	                            connection (or an HTTP server answering STATUS)
//	                            and set $NAME_PORT; stopped when the script ends
//	closedport NAME             set $NAME_PORT to a loopback port that refuses
//	                            connections until the script ends
//	envsubst FILE...            expand $VARS in FILEs in place
//	capture NAME REGEXP         set $NAME to REGEXP's first group in the last stdout
//	waitleader [ID]             wait (on an etcd watch) until a scheduler, or the
//	                            one named ID, leads; set $LEADER_ID and $LEADER_REV
//	etcd [-tls DIR] [-auth USER:PASSWORD] NAME
//	                            start an etcd of the script's own, with TLS client
//	                            certificates or authentication, and set
//	                            $NAME_ENDPOINT (see tls_test.go)
//
// Roles (patrol scheduler, patrol worker) run as background processes with
// `exec patrol ... &name&`; testscript interrupts them when the script ends.
func TestScript(t *testing.T) {
	endpoint := etcdtest.Endpoint(t)
	s := scripts{cli: etcdtest.NewClient(t)}
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATROL_ENDPOINTS", endpoint)
			env.Setenv("PATROL_PREFIX", etcdtest.NewPrefix(filepath.Base(env.WorkDir)))
			env.Setenv("PATROL_METRICS_ADDR", "127.0.0.1:0") // roles run side by side
			env.Setenv("PATROL_WEB_LISTEN", "127.0.0.1:0")
			// Under -race a process that exits 0 first sleeps a second for
			// late reports; patrol is run dozens of times.
			if gorace := env.Getenv("GORACE"); !strings.Contains(gorace, "atexit_sleep_ms") {
				env.Setenv("GORACE", strings.TrimSpace(gorace+" atexit_sleep_ms=10"))
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":      s.exits,
			"etcdkeys":   s.etcdkeys,
			"listen":     s.listen,
			"closedport": s.closedport,
			"envsubst":   s.envsubst,
			"capture":    s.capture,
			"waitleader": s.waitleader,
			"etcd":       s.etcd,
		},
	})
}

// scripts holds what the script commands share: a client to the etcd the
// scripts' patrol commands use.
type scripts struct {
	cli *clientv3.Client
}

// waitTimeout bounds every wait a script command makes.
const waitTimeout = 30 * time.Second

func (s scripts) exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exits")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad CODE %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

func (s scripts) etcdkeys(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! etcdkeys (use etcdkeys, then ! stdout .)")
	}
	withRev := len(args) == 1 && args[0] == "-rev"
	if len(args) > 1 || (len(args) == 1 && !withRev) {
		ts.Fatalf("usage: etcdkeys [-rev]")
	}
	root := queue.NewKeys(ts.Getenv("PATROL_PREFIX")).All()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, root, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	ts.Check(err)
	out := ts.Stdout()
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), root)
		if withRev {
			fmt.Fprintf(out, "%s %d\n", key, kv.ModRevision)
		} else {
			fmt.Fprintln(out, key)
		}
	}
}

func (s scripts) listen(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! listen")
	}
	var (
		t   target
		err error
	)
	switch {
	case len(args) == 1:
		t, err = openTCP()
	case len(args) == 3 && args[0] == "-http":
		status, serr := strconv.Atoi(args[1])
		if serr != nil || status < 100 || status > 599 {
			ts.Fatalf("listen: bad HTTP status %q", args[1])
		}
		t, err = openHTTP(status)
		args = args[2:]
	default:
		ts.Fatalf("usage: listen [-http STATUS] NAME")
	}
	ts.Check(err)
	ts.Defer(t.Close)
	ts.Setenv(args[0]+"_PORT", strconv.Itoa(t.Port))
}

func (s scripts) closedport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: closedport NAME")
	}
	t, err := closedTCP()
	ts.Check(err)
	ts.Defer(t.Close)
	ts.Setenv(args[0]+"_PORT", strconv.Itoa(t.Port))
}

func (s scripts) envsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst FILE...")
	}
	for _, f := range args {
		path := ts.MkAbs(f)
		b, err := os.ReadFile(path)
		ts.Check(err)
		ts.Check(os.WriteFile(path, []byte(os.Expand(string(b), ts.Getenv)), 0o666))
	}
}

func (s scripts) capture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	re, err := regexp.Compile(`(?m)` + args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: no match for %q (with a group) in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

func (s scripts) waitleader(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) > 1 {
		ts.Fatalf("usage: waitleader [ID]")
	}
	want := ""
	if len(args) == 1 {
		want = args[0]
	}
	// The leader is the candidate whose key under the election prefix was
	// created first, as concurrency.Election decides.
	prefix := queue.NewKeys(ts.Getenv("PATROL_PREFIX")).Election() + "/"
	var info queue.LeaderInfo
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := etcdtest.Wait(ctx, s.cli, prefix, func(resp *clientv3.GetResponse) bool {
		if len(resp.Kvs) == 0 {
			return false
		}
		info = queue.LeaderInfo{}
		if err := json.Unmarshal(resp.Kvs[0].Value, &info); err != nil {
			return false
		}
		return want == "" || info.ID == want
	})
	if err != nil {
		ts.Fatalf("waitleader %s: %v (leader now: %q)", want, err, info.ID)
	}
	ts.Setenv("LEADER_ID", info.ID)
	ts.Setenv("LEADER_REV", strconv.FormatInt(resp.Kvs[0].CreateRevision, 10))
}
