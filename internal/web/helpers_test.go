package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/internal/web"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

// env is a web server over a fresh prefix of the shared etcd, with a
// scheduler and a worker working that prefix, and an operator and a
// viewer token.
type env struct {
	t        *testing.T
	q        *queue.Queue
	srv      *httptest.Server
	reg      *prometheus.Registry
	operator string
	viewer   string
}

type setupOpts struct {
	noTokens bool
	maxBody  int64
	noFleet  bool // no scheduler or worker
	// followIdle is how long a follower outlives its last client (default
	// 200ms, so that tests see followers stop).
	followIdle time.Duration
}

func setup(t *testing.T, o setupOpts) *env {
	t.Helper()
	e := etcdtest.New(t)
	q := queue.New(e.Client, e.Prefix)
	ev := &env{t: t, q: q, reg: prometheus.NewPedanticRegistry()}
	var tokens *web.Tokens
	if !o.noTokens {
		op, opLine, err := web.NewToken("ops", web.RoleOperator)
		if err != nil {
			t.Fatal(err)
		}
		vw, vwLine, err := web.NewToken("watcher", web.RoleViewer)
		if err != nil {
			t.Fatal(err)
		}
		ev.operator, ev.viewer = op, vw
		if tokens, err = web.ParseTokens(strings.NewReader(opLine+"\n# a comment\n\n"+vwLine+"\n"), "tokens"); err != nil {
			t.Fatal(err)
		}
	}
	if o.followIdle == 0 {
		o.followIdle = 200 * time.Millisecond
	}
	s, err := web.New(web.Config{Queue: q, Tokens: tokens, Log: zerolog.Nop(), Metrics: metrics.NewWeb(ev.reg, web.RouteNames()),
		MaxBody: o.maxBody, Version: "test", FollowIdle: o.followIdle})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	if !o.noFleet {
		sched, err := scheduler.New(q, scheduler.Config{ID: "test-scheduler", Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		w, err := worker.New(q, worker.Config{ID: "test-worker", Concurrency: 8, Version: "test", DrainTimeout: time.Second, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { sched.Run(ctx) })
		wg.Go(func() { w.Run(ctx) })
	}
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Config = s.HTTPServer(nil)
	hs.Start()
	ev.srv = hs
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Config.Shutdown(context.Background())
		hs.Close()
		cancel()
		wg.Wait()
	})
	return ev
}

// call makes a request and decodes the JSON answer into out (if set). It
// returns the status and the raw body.
func (e *env) call(method, path, token string, body any, out any, hdr ...string) (int, string) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = strings.NewReader(string(j))
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// submit submits a batch through the API as the operator.
func (e *env) submit(body map[string]any) string {
	e.t.Helper()
	var out struct {
		ID string `json:"batch_id"`
	}
	code, raw := e.call("POST", "/api/v1/batches", e.operator, body, &out)
	if code != http.StatusCreated {
		e.t.Fatalf("submit: %d %s", code, raw)
	}
	return out.ID
}

// batch is GET /api/v1/batches/{id}'s answer, in part.
type batch struct {
	ID         string                    `json:"batch_id"`
	State      string                    `json:"state"`
	Hosts      int                       `json:"hosts"`
	Done       int                       `json:"done"`
	Counts     map[string]int            `json:"counts"`
	ZoneCounts map[string]map[string]int `json:"zone_counts"`
	Exact      bool                      `json:"exact"`
	Cancel     bool                      `json:"cancel_requested"`
}

// waitFinished follows the batch's live progress (the SSE stream) until it
// reports the batch finished, and returns the batch as the API then shows it.
func (e *env) waitFinished(id string, timeout time.Duration) batch {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	events := e.stream(ctx, "/api/v1/events?batch="+id)
	for ev := range events {
		var p batch
		if err := json.Unmarshal([]byte(ev), &p); err != nil {
			e.t.Fatalf("event %q: %v", ev, err)
		}
		if p.State == "finished" {
			cancel()
			for range events {
			}
			var b batch
			if code, raw := e.call("GET", "/api/v1/batches/"+id, "", nil, &b); code != 200 {
				e.t.Fatalf("get batch: %d %s", code, raw)
			}
			return b
		}
	}
	e.t.Fatalf("batch %s did not finish within %s", id, timeout)
	return batch{}
}

// stream opens an SSE stream and sends each progress event's data until
// ctx ends or the stream does.
func (e *env) stream(ctx context.Context, path string) <-chan string {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.t.Fatalf("stream %s: %d %s", path, resp.StatusCode, b)
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "progress":
				select {
				case out <- strings.TrimPrefix(line, "data: "):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func hostsList(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// badCase is a request that must be refused: with status code, saying
// says, as JSON, and writing nothing. token "op" and "viewer" stand for
// the env's tokens.
type badCase struct {
	name, method, path, token string
	body                      any
	hdr                       []string
	code                      int
	says                      string
}

// refuses makes each request and checks it is refused as the case says,
// with etcd's revision unchanged.
func (e *env) refuses(t *testing.T, cases []badCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			token := map[string]string{"op": e.operator, "viewer": e.viewer}[c.token]
			if token == "" {
				token = c.token
			}
			before := etcdRevision(t, e)
			code, raw := e.call(c.method, c.path, token, c.body, nil, c.hdr...)
			if code != c.code || !strings.Contains(raw, c.says) {
				t.Fatalf("answered %d %s; want %d saying %q", code, raw, c.code, c.says)
			}
			if !strings.HasPrefix(raw, "{") || !strings.Contains(raw, `"error"`) {
				t.Errorf("error is not JSON with an error field: %s", raw)
			}
			if after := etcdRevision(t, e); after != before {
				t.Errorf("bad input wrote to etcd: revision %d -> %d", before, after)
			}
		})
	}
}
