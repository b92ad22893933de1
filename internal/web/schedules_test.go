package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// describe is GET /api/v1/schedules/{name}'s answer, in part.
type describe struct {
	Spec struct {
		Name      string            `json:"name"`
		EveryMS   int64             `json:"every_ms"`
		Cron      string            `json:"cron"`
		Overlap   string            `json:"overlap"`
		CatchupMS int64             `json:"catchup_window_ms"`
		Params    map[string]string `json:"params"`
		Hosts     int               `json:"hosts"`
		Paused    bool              `json:"paused"`
		PauseNote string            `json:"pause_note"`
		Priority  int               `json:"priority"`
	} `json:"spec"`
	State struct {
		Triggered int64 `json:"triggered"`
		Missed    int64 `json:"missed"`
	} `json:"state"`
	NextRuns []struct {
		At time.Time `json:"at"`
	} `json:"next_runs"`
	LastRuns []struct {
		Batch    string         `json:"batch_id"`
		State    string         `json:"state"`
		Counts   map[string]int `json:"counts"`
		Duration int64          `json:"duration_ns"`
	} `json:"last_runs"`
	Changes *struct {
		Batch    string `json:"batch_id"`
		Previous string `json:"previous"`
		Changes  []struct {
			Host   string `json:"host"`
			Change string `json:"change"`
		} `json:"changes"`
	} `json:"last_run_changes"`
}

// changed lists the hosts of the last run's changes of kind what.
func (d describe) changed(what string) []string {
	var out []string
	if d.Changes != nil {
		for _, c := range d.Changes.Changes {
			if c.Change == what {
				out = append(out, c.Host)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (e *env) describe(name string) describe {
	e.t.Helper()
	var d describe
	if code, raw := e.call("GET", "/api/v1/schedules/"+name, "", nil, &d); code != 200 {
		e.t.Fatalf("describe %s: %d %s", name, code, raw)
	}
	return d
}

// trigger runs a schedule now through the API and waits for its run to
// finish.
func (e *env) trigger(name string) string {
	e.t.Helper()
	var out struct {
		Batch string `json:"batch_id"`
	}
	if code, raw := e.call("POST", "/api/v1/schedules/"+name+"/trigger", e.operator, nil, &out); code != http.StatusAccepted || out.Batch == "" {
		e.t.Fatalf("trigger %s: %d %s", name, code, raw)
	}
	e.waitCreated(out.Batch, time.Minute)
	e.waitFinished(out.Batch, time.Minute)
	return out.Batch
}

// waitCreated waits, watching its spec key, until the leader has created
// batch.
func (e *env) waitCreated(batch string, timeout time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	key := e.q.Keys().BatchSpec(batch)
	resp, err := e.q.Client().Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.Count > 0 {
		return
	}
	for wr := range e.q.Client().Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(resp.Header.Revision+1)) {
		if len(wr.Events) > 0 {
			return
		}
	}
	e.t.Fatalf("batch %s was not created within %s", batch, timeout)
}

func (e *env) page(path string) (int, string) {
	e.t.Helper()
	resp, err := e.srv.Client().Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestScheduleLifecycle drives a schedule through every route as an
// operator would: create, list, trigger (the real scheduler fires it),
// describe with runs and changes, update, pause, resume, delete; and the
// console's pages on the way.
func TestScheduleLifecycle(t *testing.T) {
	e := setup(t, setupOpts{})
	var created struct {
		Name    string    `json:"schedule"`
		Hosts   int       `json:"hosts"`
		NextRun time.Time `json:"next_run"`
	}
	code, raw := e.call("POST", "/api/v1/schedules", e.operator, map[string]any{"name": "web", "every": "1h", "check": "noop",
		"hosts": []string{"h1", "h2", "h3"}, "max_attempts": 1, "priority": "high"}, &created)
	if code != http.StatusCreated || created.Name != "web" || created.Hosts != 3 || !created.NextRun.After(time.Now()) {
		t.Fatalf("create: %d %s", code, raw)
	}
	var list struct {
		Schedules []struct {
			Name    string    `json:"name"`
			Cadence string    `json:"cadence"`
			Paused  bool      `json:"paused"`
			NextRun time.Time `json:"next_run"`
			LastRun string    `json:"last_run"`
			State   string    `json:"last_run_state"`
			Counts  map[string]int
		} `json:"schedules"`
	}
	if code, raw := e.call("GET", "/api/v1/schedules", "", nil, &list); code != 200 || len(list.Schedules) != 1 ||
		list.Schedules[0].Cadence != "every 1h0m0s" || list.Schedules[0].NextRun.IsZero() || list.Schedules[0].LastRun != "" {
		t.Fatalf("list: %d %s", code, raw)
	}
	d := e.describe("web")
	if d.Spec.EveryMS != 3600000 || d.Spec.Priority <= 0 || d.Spec.Overlap != "skip" || d.Spec.CatchupMS != 3600000 || len(d.NextRuns) != 10 || len(d.LastRuns) != 0 {
		t.Fatalf("describe before any run: %+v", d)
	}

	// A run, triggered: every host passes.
	first := e.trigger("web")
	d = e.describe("web")
	if len(d.LastRuns) != 1 || d.LastRuns[0].Batch != first || d.LastRuns[0].State != "finished" || d.LastRuns[0].Counts["ok"] != 3 ||
		d.LastRuns[0].Duration <= 0 || d.State.Triggered != 1 {
		t.Fatalf("describe after one run: %s", e.raw("/api/v1/schedules/web"))
	}
	if code, raw := e.call("GET", "/api/v1/schedules", "", nil, nil); code != 200 || !strings.Contains(raw, `"last_run_state":"finished"`) ||
		!strings.Contains(raw, `"last_run_counts":{"ok":3}`) {
		t.Fatalf("list after a run: %d %s", code, raw)
	}

	// Changed to fail: the next run's hosts are newly failing.
	if code, raw := e.call("PATCH", "/api/v1/schedules/web", e.operator, map[string]any{"params": map[string]string{"fail": "true"}, "every": "30m"}, nil); code != 200 {
		t.Fatalf("update: %d %s", code, raw)
	}
	second := e.trigger("web")
	d = e.describe("web")
	if d.Spec.EveryMS != 1800000 || d.Spec.Params["fail"] != "true" || len(d.LastRuns) != 2 || d.LastRuns[0].Batch != second ||
		d.Changes == nil || d.Changes.Previous != first || !slices.Equal(d.changed("newly failing"), []string{"h1", "h2", "h3"}) {
		t.Fatalf("describe after a failing run: %s", e.raw("/api/v1/schedules/web"))
	}
	if code, body := e.page("/schedules/web"); code != 200 || !strings.Contains(body, `class="newly-failing"`) || !strings.Contains(body, ">h2<") {
		t.Fatalf("schedule page after a failing run: %d\n%.2000s", code, body)
	}
	// Changed back: they recovered.
	e.call("PATCH", "/api/v1/schedules/web", e.operator, map[string]any{"params": map[string]string{}}, nil)
	e.trigger("web")
	if d = e.describe("web"); !slices.Equal(d.changed("recovered"), []string{"h1", "h2", "h3"}) {
		t.Fatalf("describe after a recovered run: %s", e.raw("/api/v1/schedules/web"))
	}

	// A new inventory replaces the old one, the rest stays.
	if code, raw := e.call("PATCH", "/api/v1/schedules/web", e.operator, map[string]any{"inventory": "h1\nh2\nh3\nh4\n"}, nil); code != 200 || !strings.Contains(raw, "4 hosts") {
		t.Fatalf("update the inventory: %d %s", code, raw)
	}
	if d = e.describe("web"); d.Spec.Hosts != 4 || d.Spec.EveryMS != 1800000 {
		t.Fatalf("describe after a new inventory: %+v", d.Spec)
	}

	// Pause with a note, resume, resume again.
	if code, raw := e.call("POST", "/api/v1/schedules/web/pause", e.operator, map[string]string{"note": "maintenance window"}, nil); code != 200 {
		t.Fatalf("pause: %d %s", code, raw)
	}
	if d = e.describe("web"); !d.Spec.Paused || d.Spec.PauseNote != "maintenance window" {
		t.Fatalf("describe paused: %+v", d.Spec)
	}
	for path, says := range map[string]string{"/schedules": "state-paused", "/schedules/web": "maintenance window"} {
		if code, body := e.page(path); code != 200 || !strings.Contains(body, says) {
			t.Errorf("GET %s while paused: %d, want %q:\n%.2000s", path, code, says, body)
		}
	}
	var resumed struct {
		Resumed bool   `json:"resumed"`
		Message string `json:"message"`
	}
	if e.call("POST", "/api/v1/schedules/web/resume", e.operator, nil, &resumed); !resumed.Resumed {
		t.Fatalf("resume: %+v", resumed)
	}
	if e.call("POST", "/api/v1/schedules/web/resume", e.operator, map[string]any{}, &resumed); resumed.Resumed || !strings.Contains(resumed.Message, "was not paused") {
		t.Fatalf("second resume: %+v", resumed)
	}
	if d = e.describe("web"); d.Spec.Paused {
		t.Fatalf("still paused after resume")
	}

	// Delete: gone from the API and the console; its runs stay.
	if code, raw := e.call("DELETE", "/api/v1/schedules/web", e.operator, nil, nil); code != 200 {
		t.Fatalf("delete: %d %s", code, raw)
	}
	if code, raw := e.call("GET", "/api/v1/schedules/web", "", nil, nil); code != 404 || !strings.Contains(raw, "GET /api/v1/schedules") {
		t.Fatalf("describe deleted: %d %s", code, raw)
	}
	if code, _ := e.page("/schedules/web"); code != 404 {
		t.Fatalf("page of a deleted schedule: %d", code)
	}
	if code, _ := e.call("GET", "/api/v1/batches/"+second, "", nil, nil); code != 200 {
		t.Fatalf("a deleted schedule's run: %d", code)
	}
}

func (e *env) raw(path string) string {
	e.t.Helper()
	_, raw := e.call("GET", path, "", nil, nil)
	return raw
}

// TestScheduleBadInput: every schedule route refuses bad input with the
// right status and a message saying what to fix, and writes nothing.
func TestScheduleBadInput(t *testing.T) {
	e := setup(t, setupOpts{maxBody: 4096, noFleet: true})
	if code, raw := e.call("POST", "/api/v1/schedules", e.operator, map[string]any{"name": "known", "cron": "0 6 * * *", "check": "noop", "hosts": []string{"a", "b"}}, nil); code != 201 {
		t.Fatalf("create: %d %s", code, raw)
	}
	create := func(kv ...any) map[string]any {
		b := map[string]any{"name": "new", "every": "5m", "check": "noop", "hosts": []string{"a"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(b, kv[i].(string))
			} else {
				b[kv[i].(string)] = kv[i+1]
			}
		}
		return b
	}
	big := fmt.Sprintf(`{"name":"new","every":"5m","check":"noop","hosts":["%s"]}`, strings.Repeat("x", 5000))
	bigNote := fmt.Sprintf(`{"note":"%s"}`, strings.Repeat("x", 70000))
	e.refuses(t, []badCase{
		{"bad cron", "POST", "/api/v1/schedules", "op", create("every", nil, "cron", "61 * * * *"), nil, 400, `cron \"61 * * * *\"`},
		{"no cadence", "POST", "/api/v1/schedules", "op", create("every", nil), nil, 400, "no cadence: pass cron"},
		{"cron and every", "POST", "/api/v1/schedules", "op", create("cron", "@daily"), nil, 400, "both cron and every"},
		{"every not a duration", "POST", "/api/v1/schedules", "op", create("every", "often"), nil, 400, `every \"often\": write a duration`},
		{"every under a second", "POST", "/api/v1/schedules", "op", create("every", "500ms"), nil, 400, "whole seconds"},
		{"bad overlap", "POST", "/api/v1/schedules", "op", create("overlap", "queue"), nil, 400, "overlap policy"},
		{"catch-up too long", "POST", "/api/v1/schedules", "op", create("catchup_window", "2000h"), nil, 400, "catchup_window"},
		{"history 0", "POST", "/api/v1/schedules", "op", create("history", 0), nil, 400, "history"},
		{"jitter past every", "POST", "/api/v1/schedules", "op", create("jitter", "10m"), nil, 400, "jitter"},
		{"bad name", "POST", "/api/v1/schedules", "op", create("name", "a/b"), nil, 400, `name \"a/b\"`},
		{"no name", "POST", "/api/v1/schedules", "op", create("name", nil), nil, 400, `give it as \"name\"`},
		{"name in use", "POST", "/api/v1/schedules", "op", create("name", "known"), nil, 409, "already exists: known; change it with PATCH /api/v1/schedules/known,"},
		{"note unpaused", "POST", "/api/v1/schedules", "op", create("note", "why"), nil, 400, "paused"},
		{"no check", "POST", "/api/v1/schedules", "op", create("check", nil), nil, 400, "no check"},
		{"no hosts", "POST", "/api/v1/schedules", "op", create("hosts", nil), nil, 400, "no hosts"},
		{"bad priority", "POST", "/api/v1/schedules", "op", create("priority", "urgent"), nil, 400, `priority \"urgent\": give high, normal or low`},
		{"bad check param", "POST", "/api/v1/schedules", "op", create("params", map[string]string{"sleep": "soon"}), nil, 400, "sleep"},
		{"unknown field", "POST", "/api/v1/schedules", "op", create("batch_id", "x"), nil, 400, `unknown field \"batch_id\"`},
		{"malformed JSON", "POST", "/api/v1/schedules", "op", `{"name": "new",`, nil, 400, "malformed JSON"},
		{"oversized body", "POST", "/api/v1/schedules", "op", big, nil, 413, "request body over 4.0 KiB"},
		{"no token", "POST", "/api/v1/schedules", "", create(), nil, 401, "needs a token"},
		{"wrong token", "POST", "/api/v1/schedules/known/trigger", "ptk_nope", nil, nil, 401, "not known"},
		{"viewer create", "POST", "/api/v1/schedules", "viewer", create(), nil, 403, "operator token"},
		{"viewer pause", "POST", "/api/v1/schedules/known/pause", "viewer", map[string]string{"note": "x"}, nil, 403, "operator token"},
		{"viewer trigger", "POST", "/api/v1/schedules/known/trigger", "viewer", nil, nil, 403, "operator token"},
		{"viewer delete", "DELETE", "/api/v1/schedules/known", "viewer", nil, nil, 403, "operator token"},
		{"no token pause", "POST", "/api/v1/schedules/known/pause", "", nil, nil, 401, "needs a token"},
		{"cross-origin pause", "POST", "/api/v1/schedules/known/pause", "op", nil, []string{"Sec-Fetch-Site", "cross-site"}, 403, "CSRF"},
		{"unknown describe", "GET", "/api/v1/schedules/nosuch", "", nil, nil, 404, "schedule not found: nosuch"},
		{"unknown update", "PATCH", "/api/v1/schedules/nosuch", "op", map[string]string{"every": "5m"}, nil, 404, "schedule not found"},
		{"unknown delete", "DELETE", "/api/v1/schedules/nosuch", "op", nil, nil, 404, "schedule not found"},
		{"unknown pause", "POST", "/api/v1/schedules/nosuch/pause", "op", nil, nil, 404, "schedule not found"},
		{"unknown resume", "POST", "/api/v1/schedules/nosuch/resume", "op", nil, nil, 404, "schedule not found"},
		{"unknown trigger", "POST", "/api/v1/schedules/nosuch/trigger", "op", nil, nil, 404, "schedule not found"},
		{"bad name in path", "GET", "/api/v1/schedules/-x-", "", nil, nil, 400, "schedule name"},
		{"update nothing", "PATCH", "/api/v1/schedules/known", "op", map[string]any{}, nil, 400, "nothing to change"},
		{"update bad cron", "PATCH", "/api/v1/schedules/known", "op", map[string]any{"cron": "every day"}, nil, 400, "cron"},
		{"update bad param", "PATCH", "/api/v1/schedules/known", "op", map[string]any{"params": map[string]string{"sleep": "soon"}}, nil, 400, "sleep"},
		{"update bad duration", "PATCH", "/api/v1/schedules/known", "op", map[string]any{"timeout": "soon"}, nil, 400, "timeout"},
		{"update malformed JSON", "PATCH", "/api/v1/schedules/known", "op", "{every}", nil, 400, "malformed JSON"},
		{"pause malformed JSON", "POST", "/api/v1/schedules/known/pause", "op", `{"note": 5}`, nil, 400, `field \"note\": want string`},
		{"pause oversized", "POST", "/api/v1/schedules/known/pause", "op", bigNote, nil, 413, "request body over"},
		{"trigger with fields", "POST", "/api/v1/schedules/known/trigger", "op", map[string]any{"now": true}, nil, 400, "unknown field"},
	})
	// The console says the same.
	if code, body := e.page("/schedules/nosuch"); code != 404 || !strings.Contains(body, "schedule not found") {
		t.Errorf("page of an unknown schedule: %d %.500s", code, body)
	}
	if code, body := e.page("/schedules"); code != 200 || !strings.Contains(body, `href="/schedules/known"`) || !strings.Contains(body, "cron &#39;0 6 * * *&#39;") {
		t.Errorf("schedules page: %d %.3000s", code, body)
	}
}
