package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/nettest"
	"github.com/patrol-dev/patrol/internal/web"
)

func TestSubmitFinishAndReadBack(t *testing.T) {
	e := setup(t, setupOpts{})
	// 30 hosts whose port listens, 2 whose port is closed: a tcp check
	// against loopback passes 30 and fails 2.
	open, closed := listening(t), closedPort(t)
	var inv strings.Builder
	for _, h := range hostsList("ok", 30) {
		fmt.Fprintf(&inv, "%s ansible_host=127.0.0.1 ansible_port=%d\n", h, open)
	}
	fmt.Fprintf(&inv, "bad1 ansible_host=127.0.0.1 ansible_port=%d\nbad2 ansible_host=127.0.0.1 ansible_port=%d\n", closed, closed)
	id := e.submit(map[string]any{"check": "tcp", "inventory": inv.String(), "max_attempts": 1})

	b := e.waitFinished(id, time.Minute)
	if b.Done != 32 || b.Counts["ok"] != 30 || b.Counts["fail"] != 2 || !b.Exact {
		t.Fatalf("finished batch: %+v", b)
	}
	if b.ZoneCounts["default"]["fail"] != 2 {
		t.Errorf("zone counts: %v", b.ZoneCounts)
	}

	// The list shows it, finished.
	var list struct {
		Batches []struct {
			ID    string         `json:"batch_id"`
			State string         `json:"state"`
			Done  int            `json:"done"`
			Count map[string]int `json:"counts"`
		} `json:"batches"`
	}
	if code, raw := e.call("GET", "/api/v1/batches?state=finished", "", nil, &list); code != 200 || len(list.Batches) != 1 || list.Batches[0].ID != id || list.Batches[0].Done != 32 {
		t.Fatalf("list: %d %s", code, raw)
	}
	if code, _ := e.call("GET", "/api/v1/batches?state=running", "", nil, &list); code != 200 || len(list.Batches) != 0 {
		t.Fatalf("running list: %+v", list)
	}

	// Paging through every result, 7 at a time, gives each host once, in order.
	type page struct {
		Rows []struct {
			Host   string `json:"host"`
			Status string `json:"status"`
			Zone   string `json:"zone"`
		} `json:"rows"`
		Next   string `json:"next"`
		Source string `json:"source"`
	}
	// ... whether each range runs to the batch's end, or (as for a batch of
	// a million) stops where the follower's task list says the page ends.
	for _, big := range []bool{false, true} {
		if big {
			defer web.SetBigBatch(1)()
		}
		var seen []string
		after := ""
		for range 10 {
			var p page
			code, raw := e.call("GET", "/api/v1/batches/"+id+"/results?limit=7&after="+after, "", nil, &p)
			if code != 200 {
				t.Fatalf("results: %d %s", code, raw)
			}
			for _, r := range p.Rows {
				seen = append(seen, r.Host)
				if r.Zone != "default" {
					t.Errorf("row %s: zone %q", r.Host, r.Zone)
				}
			}
			if after = p.Next; after == "" {
				break
			}
		}
		if len(seen) != 32 || !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != 32 {
			t.Fatalf("paged hosts (bounded ranges: %v): %v", big, seen)
		}
		// A dense filter (ok: most hosts) scans ranges too.
		var oks page
		e.call("GET", "/api/v1/batches/"+id+"/results?status=ok&limit=50", "", nil, &oks)
		if len(oks.Rows) != 30 || oks.Source != "range" {
			t.Fatalf("ok hosts (bounded ranges: %v): %d rows from %s, next %q", big, len(oks.Rows), oks.Source, oks.Next)
		}
	}

	// Failing hosts: few, so read through the follower's index.
	var fails page
	e.call("GET", "/api/v1/batches/"+id+"/results?status=fail,error,dead", "", nil, &fails)
	if len(fails.Rows) != 2 || fails.Rows[0].Host != "bad1" || fails.Rows[1].Status != "fail" || fails.Source != "index" {
		t.Fatalf("failing: %+v", fails)
	}
	// A host prefix search.
	var found page
	e.call("GET", "/api/v1/batches/"+id+"/results?q=ok01", "", nil, &found)
	if len(found.Rows) != 10 || found.Rows[0].Host != "ok010" {
		t.Fatalf("search ok01: %+v", found)
	}
	// One host, with its details.
	var host struct {
		Host    string `json:"host"`
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if code, raw := e.call("GET", "/api/v1/batches/"+id+"/hosts/bad2", "", nil, &host); code != 200 || host.Status != "fail" || host.Message == "" {
		t.Fatalf("host bad2: %d %s", code, raw)
	}
	if code, raw := e.call("GET", "/api/v1/batches/"+id+"/hosts/nosuch", "", nil, nil); code != 404 || !strings.Contains(raw, "not in batch") {
		t.Fatalf("unknown host: %d %s", code, raw)
	}

	// Retry the failed hosts: a viewer may not, an operator may.
	if code, raw := e.call("POST", "/api/v1/batches/"+id+"/retry", e.viewer, map[string]bool{"failed": true}, nil); code != 403 || !strings.Contains(raw, "operator") {
		t.Fatalf("viewer retry: %d %s", code, raw)
	}
	if code, raw := e.call("POST", "/api/v1/batches/"+id+"/retry", e.operator, map[string]bool{}, nil); code != 400 || !strings.Contains(raw, "say which hosts") {
		t.Fatalf("retry of nothing: %d %s", code, raw)
	}
	var round struct {
		Round int `json:"round"`
	}
	if code, raw := e.call("POST", "/api/v1/batches/"+id+"/retry", e.operator, map[string]bool{"failed": true}, &round); code != 200 || round.Round != 1 {
		t.Fatalf("retry: %d %s", code, raw)
	}
	b = e.waitFinished(id, time.Minute)
	if b.Counts["fail"] != 2 || b.Counts["ok"] != 30 {
		t.Fatalf("after retry: %+v", b)
	}
	if v := requests(t, e, "POST /api/v1/batches/{batch}/retry", "403"); v != 1 {
		t.Errorf("patrol_web_requests_total{route=retry,code=403} = %v, want 1", v)
	}
}

// requests reads patrol_web_requests_total{route,code} from the
// server's registry.
func requests(t *testing.T, e *env, route, code string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "patrol_web_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["route"] == route && l["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestCancelRunningBatch(t *testing.T) {
	e := setup(t, setupOpts{})
	id := e.submit(map[string]any{"check": "noop", "params": map[string]string{"sleep": "1m"}, "hosts": hostsList("slow", 40), "timeout": "2m"})
	// It runs: the worker (8 slots) holds some, the rest wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ev := range e.stream(ctx, "/api/v1/events?batch="+id) {
		var p batch
		json.Unmarshal([]byte(ev), &p)
		if p.Counts["running"] > 0 {
			cancel()
		}
	}
	var running struct {
		Rows []struct {
			Status, Worker string
		} `json:"rows"`
	}
	if code, raw := e.call("GET", "/api/v1/batches/"+id+"/results?status=running", "", nil, &running); code != 200 || len(running.Rows) == 0 || running.Rows[0].Worker != "test-worker" {
		t.Fatalf("running: %d %s", code, raw)
	}
	if code, raw := e.call("POST", "/api/v1/batches/"+id+"/retry", e.operator, map[string]bool{"failed": true}, nil); code != 409 || !strings.Contains(raw, "still running") {
		t.Fatalf("retry while running: %d %s", code, raw)
	}
	for _, c := range []struct {
		name, token string
		code        int
		says        string
	}{
		{"no token", "", 401, "needs a token"},
		{"wrong token", "ptk_wrong", 401, "not known"},
		{"viewer", e.viewer, 403, "operator token"},
	} {
		code, raw := e.call("POST", "/api/v1/batches/"+id+"/cancel", c.token, nil, nil)
		if code != c.code || !strings.Contains(raw, c.says) {
			t.Errorf("%s: cancel answered %d %s; want %d saying %q", c.name, code, raw, c.code, c.says)
		}
	}
	var b batch
	if e.call("GET", "/api/v1/batches/"+id, "", nil, &b); b.State != "running" || b.Cancel {
		t.Fatalf("refused cancels changed the batch: %+v", b)
	}
	var out struct {
		Cancelled bool `json:"cancelled"`
	}
	if code, raw := e.call("POST", "/api/v1/batches/"+id+"/cancel", e.operator, nil, &out); code != 200 || !out.Cancelled {
		t.Fatalf("cancel: %d %s", code, raw)
	}
	b = e.waitFinished(id, time.Minute)
	if b.Counts["cancelled"] != 40 {
		t.Fatalf("cancelled batch: %+v", b)
	}
	if code, raw := e.call("POST", "/api/v1/batches/"+id+"/cancel", e.operator, nil, &out); code != 200 || out.Cancelled || !strings.Contains(raw, "already finished") {
		t.Fatalf("cancel of a finished batch: %d %s", code, raw)
	}
}

func TestBadInput(t *testing.T) {
	e := setup(t, setupOpts{maxBody: 4096, noFleet: true})
	id := e.submit(map[string]any{"check": "noop", "hosts": []string{"a", "b"}, "batch_id": "known"})
	big := `{"check":"noop","hosts":["` + strings.Repeat("x", 5000) + `"]}`
	e.refuses(t, []badCase{
		{"malformed JSON", "POST", "/api/v1/batches", "op", `{"check": "noop",`, nil, 400, "malformed JSON"},
		{"unknown field", "POST", "/api/v1/batches", "op", `{"check":"noop","hosts":["a"],"colour":"red"}`, nil, 400, `unknown field \"colour\"`},
		{"two values", "POST", "/api/v1/batches", "op", `{"check":"noop","hosts":["a"]} {}`, nil, 400, "more than one JSON value"},
		{"wrong type", "POST", "/api/v1/batches", "op", `{"check":"noop","hosts":"a"}`, nil, 400, `field \"hosts\": want []string`},
		{"empty body", "POST", "/api/v1/batches", "op", "", nil, 400, "empty body"},
		{"oversized body", "POST", "/api/v1/batches", "op", big, nil, 413, "request body over 4.0 KiB"},
		{"not JSON", "POST", "/api/v1/batches", "op", "check=noop", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "send JSON"},
		{"no check", "POST", "/api/v1/batches", "op", map[string]any{"hosts": []string{"a"}}, nil, 400, "no check"},
		{"unknown check", "POST", "/api/v1/batches", "op", map[string]any{"check": "ping6", "hosts": []string{"a"}}, nil, 400, "ping6"},
		{"bad param", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "params": map[string]string{"sleep": "soon"}, "hosts": []string{"a"}}, nil, 400, "sleep"},
		{"no hosts", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop"}, nil, 400, "no hosts"},
		{"both host forms", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}, "inventory": "b\n"}, nil, 400, "not both"},
		{"bad host name", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a b"}}, nil, 400, "not a host name"},
		{"bad inventory", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "inventory": "web1:99999\n"}, nil, 400, "inventory"},
		{"bad limit", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}, "limit": "nosuch"}, nil, 400, "limit"},
		{"bad duration", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}, "timeout": "soon"}, nil, 400, "timeout"},
		{"bad policy", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}, "max_failures": "lots"}, nil, 400, "max failures"},
		{"bad priority", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}, "priority": "urgent"}, nil, 400, "priority"},
		{"bad batch ID", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}, "batch_id": "a/b"}, nil, 400, "batch_id"},
		{"reused batch ID", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"c"}, "batch_id": "known"}, nil, 409, "already used"},
		{"cross-origin write", "POST", "/api/v1/batches", "op", map[string]any{"check": "noop", "hosts": []string{"a"}}, []string{"Sec-Fetch-Site", "cross-site"}, 403, "CSRF"},
		{"foreign Origin", "POST", "/api/v1/batches/known/cancel", "op", nil, []string{"Origin", "https://evil.example"}, 403, "CSRF"},
		{"no token", "POST", "/api/v1/batches", "", map[string]any{"check": "noop", "hosts": []string{"a"}}, nil, 401, "needs a token"},
		{"wrong token", "POST", "/api/v1/batches", "ptk_nope", map[string]any{"check": "noop", "hosts": []string{"a"}}, nil, 401, "not known"},
		{"wrong token on a read", "GET", "/api/v1/batches", "ptk_nope", nil, nil, 401, "not known"},
		{"malformed Authorization", "GET", "/api/v1/whoami", "", nil, []string{"Authorization", "Basic Zm9v"}, 401, "Bearer"},
		{"viewer submit", "POST", "/api/v1/batches", "viewer", map[string]any{"check": "noop", "hosts": []string{"a"}}, nil, 403, "operator"},
		{"unknown batch", "GET", "/api/v1/batches/nosuch", "", nil, nil, 404, "no such batch"},
		{"unknown batch results", "GET", "/api/v1/batches/nosuch/results", "", nil, nil, 404, "no such batch"},
		{"unknown batch cancel", "POST", "/api/v1/batches/nosuch/cancel", "op", nil, nil, 404, "no such batch"},
		{"unknown batch retry", "POST", "/api/v1/batches/nosuch/retry", "op", map[string]bool{"failed": true}, nil, 404, "no such batch"},
		{"bad batch in path", "GET", "/api/v1/batches/-x-/results", "", nil, nil, 400, "batch ID"},
		{"unknown status", "GET", "/api/v1/batches/known/results?status=great", "", nil, nil, 400, "status"},
		{"pending listed", "GET", "/api/v1/batches/known/results?status=pending", "", nil, nil, 400, "counted"},
		{"running with final", "GET", "/api/v1/batches/known/results?status=running,fail", "", nil, nil, 400, "on its own"},
		{"limit too big", "GET", "/api/v1/batches/known/results?limit=100000", "", nil, nil, 400, "limit"},
		{"bad zone", "GET", "/api/v1/batches/known/results?zone=a/b", "", nil, nil, 400, "zone"},
		{"bad state", "GET", "/api/v1/batches?state=sleeping", "", nil, nil, 400, "state"},
		{"bad cursor", "GET", "/api/v1/batches?after=nosuch", "", nil, nil, 400, "after"},
		{"no batch to follow", "GET", "/api/v1/events", "", nil, nil, 400, "?batch=ID"},
		{"unknown batch to follow", "GET", "/api/v1/events?batch=nosuch", "", nil, nil, 404, "no such batch"},
		{"retry body not JSON", "POST", "/api/v1/batches/known/retry", "op", "{failed}", nil, 400, "malformed JSON"},
		{"retry unfinished", "POST", "/api/v1/batches/known/retry", "op", map[string]bool{"failed": true}, nil, 409, "still running"},
		{"unknown route", "GET", "/api/v1/nothing", "", nil, nil, 404, "no such page or API route"},
		{"wrong method", "DELETE", "/api/v1/batches/known", "op", nil, nil, 404, "no such page or API route: DELETE"},
	})
	_ = id
}

// etcdRevision is etcd's current revision: it moves with any write.
func etcdRevision(t *testing.T, e *env) int64 {
	t.Helper()
	resp, err := e.q.Client().Get(context.Background(), "rev-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestWritesRefusedWithoutTokensFile(t *testing.T) {
	e := setup(t, setupOpts{noTokens: true, noFleet: true})
	code, raw := e.call("POST", "/api/v1/batches", "", map[string]any{"check": "noop", "hosts": []string{"a"}}, nil)
	if code != 403 || !strings.Contains(raw, "--tokens") {
		t.Fatalf("write without a tokens file: %d %s", code, raw)
	}
	var who map[string]any
	if code, _ := e.call("GET", "/api/v1/whoami", "", nil, &who); code != 200 || who["writes_enabled"] != false {
		t.Fatalf("whoami: %v", who)
	}
	if code, _ := e.call("GET", "/api/v1/batches", "", nil, nil); code != 200 {
		t.Fatalf("reads work without tokens: %d", code)
	}
}

func TestWorkersLeaderWhoami(t *testing.T) {
	e := setup(t, setupOpts{})
	var ws struct {
		Workers []struct {
			ID        string `json:"id"`
			Capacity  int    `json:"capacity"`
			LeaseLeft int64  `json:"lease_left_s"`
		} `json:"workers"`
	}
	var l struct {
		Leading bool `json:"leading"`
		Leader  struct {
			ID string `json:"id"`
		} `json:"leader"`
	}
	// The fleet registers and campaigns as the server starts: wait for both
	// through the API itself, with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.call("GET", "/api/v1/workers", "", nil, &ws)
		e.call("GET", "/api/v1/leader", "", nil, &l)
		if len(ws.Workers) == 1 && l.Leading {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %+v, leader %+v", ws, l)
		}
		waitABit(t, e)
	}
	if ws.Workers[0].ID != "test-worker" || ws.Workers[0].Capacity != 8 || ws.Workers[0].LeaseLeft <= 0 || l.Leader.ID != "test-scheduler" {
		t.Fatalf("workers %+v, leader %+v", ws, l)
	}
	var who map[string]any
	if e.call("GET", "/api/v1/whoami", e.viewer, nil, &who); who["name"] != "watcher" || who["role"] != "viewer" {
		t.Fatalf("whoami viewer: %v", who)
	}
}

// waitABit waits for the next etcd revision under the fleet's keys to
// move, or a short while: the fleet writes as it starts.
func waitABit(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	<-e.q.Client().Watch(ctx, e.q.Keys().All(), clientv3.WithPrefix())
}

func TestConsolePages(t *testing.T) {
	e := setup(t, setupOpts{})
	id := e.submit(map[string]any{"check": "noop", "params": map[string]string{"fail": "true"}, "hosts": []string{"h1", "h2"}, "max_attempts": 1})
	e.waitFinished(id, time.Minute)
	for _, c := range []struct {
		path string
		code int
		says string
	}{
		{"/", 200, id},
		{"/?state=finished", 200, id},
		{"/batches/" + id, 200, "Showing failing hosts first"},
		{"/batches/" + id + "?status=ok", 200, "No host in ok"},
		{"/batches/" + id + "/hosts/h1", 200, "noop: asked to fail"},
		{"/workers", 200, "Workers"},
		{"/leader", 200, "Scheduler leader"},
		{"/static/console.css", 200, "--ok"},
		{"/static/console.js", 200, "EventSource"},
		{"/static/layout.html", 404, "no such file"},
		{"/static/nope.js", 404, "no such file"},
		{"/batches/nosuch", 404, "no such batch"},
		{"/batches/" + id + "/hosts/zz", 404, "not in batch"},
		{"/nothing", 404, "no such page"},
	} {
		resp, err := e.srv.Client().Get(e.srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, err = io.Copy(&b, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.code || !strings.Contains(b.String(), c.says) {
			t.Errorf("GET %s: %d, want %d with %q:\n%.600s", c.path, resp.StatusCode, c.code, c.says, b.String())
		}
		if c.code == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") && resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no Content-Security-Policy", c.path)
		}
	}
	_ = http.StatusOK
}

// listening returns the port of a loopback listener that accepts until the
// test ends.
func listening(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	port, release, err := nettest.ClosedPort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return port
}
