package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/internal/web"
)

// chromiumPath finds a headless-capable Chromium: $PATROL_CHROMIUM, or
// Debian's chromium (what .ci/run installs).
func chromiumPath() string {
	if p := os.Getenv("PATROL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// screenshotDir is where the browser test keeps its screenshots:
// $PATROL_SCREENSHOTS (made if missing), or a temporary directory.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("PATROL_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s (set PATROL_SCREENSHOTS to keep them)", dir)
	return dir
}

// browser drives a headless Chromium.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	base string
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", expr, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatalf("browser: %s gave %s: %v", expr, raw, err)
		}
	}
}

// waitJS waits until the JavaScript predicate holds.
func (b *browser) waitJS(what, pred string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](pred, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		b.t.Fatalf("browser: waiting for %s (%s): %v", what, pred, err)
	}
}

// shot saves a screenshot of the whole page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// onPhone opens path on a phone-sized screen, waits for sel, checks the
// page is no wider than the screen and saves a screenshot as shot.
func (b *browser) onPhone(path, sel, shot string) {
	b.t.Helper()
	b.do("open "+path+" on a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(b.base+path),
		chromedp.Query(chromedp.CSS(sel), chromedp.NodeVisible))
	var overflow bool
	b.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
	if overflow {
		b.t.Errorf("%s is wider than a phone's screen", path)
	}
	b.shot(shot)
}

// pageLoad is what the browser measured of the last navigation.
type pageLoad struct {
	Bytes      float64 `json:"bytes"`   // transferred, the document and every resource
	Decoded    float64 `json:"decoded"` // their decoded bodies
	Resources  int     `json:"resources"`
	DOMReadyMS float64 `json:"dom_ready_ms"`
	LoadMS     float64 `json:"load_ms"`
}

func (b *browser) measure(name string) pageLoad {
	b.t.Helper()
	var p pageLoad
	b.eval(`(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		const res = performance.getEntriesByType("resource").filter(r => !r.name.includes("/api/v1/events"));
		const all = [nav].concat(res);
		return {bytes: all.reduce((s, e) => s + e.transferSize, 0), decoded: all.reduce((s, e) => s + e.decodedBodySize, 0),
			resources: res.length, dom_ready_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd};
	})()`, &p)
	b.t.Logf("first load of %s: %.0f bytes transferred (%.0f decoded, %d resources), DOM ready %.0f ms, loaded %.0f ms",
		name, p.Bytes, p.Decoded, p.Resources, p.DOMReadyMS, p.LoadMS)
	return p
}

// console is a real `patrol dev` with an operator and a viewer token,
// and a headless Chromium to open its console.
type console struct {
	*browser
	opToken, viewToken string
}

// startConsole starts `patrol dev` and Chromium (skipping the test when
// there is no Chromium, outside CI). Both stop when the test ends.
func startConsole(t *testing.T) *console {
	t.Helper()
	chromium := chromiumPath()
	if chromium == "" {
		msg := "no Chromium: install Debian's chromium (apt-get install chromium), or set PATROL_CHROMIUM to a Chrome binary; CI installs it (.ci/run)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := proctest.Binary(t)
	dir := t.TempDir()
	opToken, opLine, err := web.NewToken("ops", web.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	viewToken, viewLine, err := web.NewToken("watcher", web.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(opLine+"\n"+viewLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := proctest.Start(t, bin, "patrol dev", nil, "dev", "--listen-client", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "etcd"),
		"--web-listen", "127.0.0.1:0", "--tokens", tokens, "--workers", "2", "--concurrency", "16")
	base := strings.TrimSuffix(dev.WaitLog(t, time.Minute, "web console listening", nil).Str("url"), "/")

	actx, cancelA := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(filepath.Join(dir, "chromium")))...)
	t.Cleanup(cancelA)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	// Start the browser on ctx itself: a browser started under a shorter
	// context would end with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", chromium, err)
	}
	return &console{browser: &browser{t: t, ctx: ctx, dir: screenshotDir(t), base: base}, opToken: opToken, viewToken: viewToken}
}

// api calls the dev server's API with token and fails the test on an
// answer of 300 or more.
func (c *console) api(method, path, token string, body any) map[string]any {
	t := c.t
	t.Helper()
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = strings.NewReader(string(j))
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

// TestConsoleInBrowser opens the console of a real `patrol dev` in
// headless Chromium: it sees a batch finish live, filters it to its
// failing hosts, opens one, and cancels a running batch with an operator
// token after a viewer token is refused. It takes a screenshot of each
// page.
func TestConsoleInBrowser(t *testing.T) {
	c := startConsole(t)
	b, base, opToken, viewToken, api := c.browser, c.base, c.opToken, c.viewToken, c.api
	// The hosts: an HTTP server on loopback answers /ok* after 1.5 s and
	// /bad* at once with a 500; 96 slow hosts on 32 slots take about 5 s.
	target := slowTarget(t)
	var inv strings.Builder
	for i := range 96 {
		fmt.Fprintf(&inv, "web%03d\n", i)
	}
	for i := range 4 {
		fmt.Fprintf(&inv, "bad%03d\n", i)
	}
	live := api("POST", "/api/v1/batches", opToken, map[string]any{"batch_id": "live", "check": "http", "inventory": inv.String(),
		"params": map[string]string{"url": target + "/{{.Host}}"}, "max_attempts": 1})["batch_id"].(string)

	// The batch list: the batch is there, running, its bar moving.
	start := time.Now()
	b.do("open the batch list", chromedp.Navigate(base+"/"), chromedp.Query(chromedp.CSS(`tr[data-batch="live"]`), chromedp.NodeVisible))
	t.Logf("batch list shown in %s", time.Since(start).Round(time.Millisecond))
	b.measure("the batch list")
	b.shot("1-batches")

	// The batch page, opened while it runs, sees it finish live (SSE).
	start = time.Now()
	b.do("open the batch", chromedp.Navigate(base+"/batches/"+live), chromedp.Query(chromedp.CSS("#batch"), chromedp.NodeVisible))
	t.Logf("batch page shown in %s", time.Since(start).Round(time.Millisecond))
	b.measure("a batch page")
	if st := b.text(`#batch [data-field=state]`); st != "running" {
		t.Fatalf("batch page opened in state %q; the test needs it running to see it finish live", st)
	}
	b.shot("2-batch-running")
	b.waitJS("the batch to finish on the page, live", `document.querySelector("#batch [data-field=state]").textContent === "finished"`, 2*time.Minute)
	if done := b.text(`#batch [data-field=done]`); done != "100" {
		t.Errorf("finished batch shows %s done, want 100", done)
	}
	if fails := b.text(`[data-count="fail"]`); fails != "4" {
		t.Errorf("finished batch shows %s failed, want 4", fails)
	}
	b.shot("3-batch-finished")

	// Filter to the failing hosts (the page does so by default once some
	// failed), then open one.
	b.do("filter to failing hosts", chromedp.Navigate(base+"/batches/"+live+"?status=fail,error,dead"),
		chromedp.Query(chromedp.CSS("table.results"), chromedp.NodeVisible))
	var rows []string
	b.eval(`Array.from(document.querySelectorAll("table.results tbody tr td:first-child")).map(td => td.textContent.trim())`, &rows)
	if strings.Join(rows, ",") != "bad000,bad001,bad002,bad003" {
		t.Fatalf("failing hosts shown: %v", rows)
	}
	b.shot("4-batch-failing")
	b.do("open a failing host", chromedp.Click(chromedp.CSS(`table.results a`)), chromedp.Query(chromedp.CSS("dl.facts"), chromedp.NodeVisible))
	if h1 := b.text("h1"); !strings.Contains(h1, "bad000") || !strings.Contains(h1, "fail") {
		t.Fatalf("host page: %q", h1)
	}
	if d := b.text("dl.details"); !strings.Contains(d, "status_code") || !strings.Contains(d, "500") {
		t.Errorf("host page shows no check details with the status code: %q", d)
	}
	b.shot("5-host")

	// A running batch: a viewer token is refused, an operator's cancels it.
	api("POST", "/api/v1/batches", opToken, map[string]any{"batch_id": "slow", "check": "noop", "hosts": hostsList("slow", 300),
		"params": map[string]string{"sleep": "30s"}, "timeout": "2m"})
	b.do("open the running batch", chromedp.Navigate(base+"/batches/slow"), chromedp.Query(chromedp.CSS(`[data-action=cancel]`), chromedp.NodeVisible))
	b.waitJS("hosts to run", `+document.querySelector('[data-count="running"]').textContent > 0`, time.Minute)
	b.eval(`window.confirm = () => true; null`, nil) // the real dialog is modal; the test says yes
	b.do("give a viewer token", chromedp.Click(chromedp.CSS("#token-button")), chromedp.SendKeys(chromedp.CSS("#token-input"), viewToken),
		chromedp.Click(chromedp.CSS("#token-save")))
	b.waitJS("the dialog to close", `!document.querySelector("#token-dialog").open`, 10*time.Second)
	b.do("cancel as a viewer", chromedp.Click(chromedp.CSS(`[data-action=cancel]`)))
	b.waitJS("the refusal", `document.querySelector("#action-status").textContent.includes("operator token")`, 10*time.Second)
	b.shot("6-cancel-refused")
	if st := b.text(`#batch [data-field=state]`); st != "running" {
		t.Fatalf("a viewer's cancel changed the batch: %s", st)
	}
	b.do("give an operator token", chromedp.Click(chromedp.CSS("#token-button")), chromedp.Click(chromedp.CSS("#token-forget")))
	b.waitJS("the dialog to close", `!document.querySelector("#token-dialog").open`, 10*time.Second)
	b.do("cancel as an operator", chromedp.Click(chromedp.CSS(`[data-action=cancel]`)), chromedp.Query(chromedp.CSS("#token-dialog[open]"), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.CSS("#token-input"), opToken), chromedp.Click(chromedp.CSS("#token-save")))
	b.waitJS("the cancel", `document.querySelector("#action-status").textContent.includes("cancel requested")`, 10*time.Second)
	b.waitJS("the batch to end cancelled", `document.querySelector("#batch [data-field=state]").textContent === "finished"`, time.Minute)
	if n := b.text(`[data-count="cancelled"]`); n != "300" {
		t.Errorf("cancelled batch shows %s cancelled, want 300", n)
	}
	b.shot("7-cancelled")

	b.do("open the workers", chromedp.Navigate(base+"/workers"), chromedp.Query(chromedp.CSS("table.workers"), chromedp.NodeVisible))
	if w := b.text("table.workers"); !strings.Contains(w, "dev-worker-1") {
		t.Errorf("workers page: %q", w)
	}
	b.shot("8-workers")
	b.do("open the leader", chromedp.Navigate(base+"/leader"), chromedp.Query(chromedp.CSS("dl.facts"), chromedp.NodeVisible))
	if l := b.text("dl.facts"); !strings.Contains(l, "dev-scheduler") {
		t.Errorf("leader page: %q", l)
	}
	b.shot("9-leader")

	b.onPhone("/batches/"+live, "#batch", "10-batch-phone")
}

// slowTarget serves /bad* with a 500 at once and anything else with a 200
// after 1.5 s, on loopback, until the test ends.
func slowTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/bad") {
			http.Error(w, "broken on purpose", http.StatusInternalServerError)
			return
		}
		select {
		case <-time.After(1500 * time.Millisecond): // how slow the host is, not a wait for anything
		case <-r.Context().Done():
		}
		fmt.Fprintln(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestSchedulesInBrowser opens the schedules of a real `patrol dev` in
// headless Chromium: the list from the nav, a schedule's page, a run
// triggered with an operator token (a viewer's refused) that the real
// scheduler fires and the page then lists, and a pause with a note. It
// takes a screenshot of each page.
func TestSchedulesInBrowser(t *testing.T) {
	c := startConsole(t)
	b := c.browser
	c.api("POST", "/api/v1/schedules", c.opToken, map[string]any{"name": "nightly", "cron": "0 3 * * *", "check": "noop",
		"hosts": hostsList("web", 20), "max_attempts": 1})

	b.do("open the schedules from the nav", chromedp.Navigate(c.base+"/"), chromedp.Click(chromedp.CSS(`nav a[href="/schedules"]`)),
		chromedp.Query(chromedp.CSS(`tr[data-schedule="nightly"]`), chromedp.NodeVisible))
	if row := b.text(`tr[data-schedule="nightly"]`); !strings.Contains(row, "cron '0 3 * * *'") || !strings.Contains(row, "active") || !strings.Contains(row, "none yet") {
		t.Fatalf("schedule row: %q", row)
	}
	b.shot("schedules-1-list")

	b.do("open the schedule", chromedp.Click(chromedp.CSS(`tr[data-schedule="nightly"] a`)), chromedp.Query(chromedp.CSS("#schedule"), chromedp.NodeVisible))
	if facts := b.text("dl.facts"); !strings.Contains(facts, "skip") || !strings.Contains(facts, "1h0m0s") || !strings.Contains(facts, "0 missed") {
		t.Errorf("schedule facts: %q", facts)
	}
	var ticks int
	b.eval(`document.querySelectorAll("ol.ticks li").length`, &ticks)
	if ticks != 10 {
		t.Errorf("the page lists %d next runs, want 10", ticks)
	}
	b.shot("schedules-2-schedule")

	// Run now: a viewer's token is refused, an operator's is taken.
	b.eval(`window.confirm = () => true; null`, nil)
	b.do("run now as a viewer", chromedp.Click(chromedp.CSS(`[data-action=trigger]`)), chromedp.Query(chromedp.CSS("#token-dialog[open]"), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.CSS("#token-input"), c.viewToken), chromedp.Click(chromedp.CSS("#token-save")))
	b.waitJS("the refusal", `document.querySelector("#action-status").textContent.includes("operator token")`, 10*time.Second)
	b.do("forget the viewer's token", chromedp.Click(chromedp.CSS("#token-button")), chromedp.Click(chromedp.CSS("#token-forget")))
	b.waitJS("the dialog to close", `!document.querySelector("#token-dialog").open`, 10*time.Second)
	b.do("run now as an operator", chromedp.Click(chromedp.CSS(`[data-action=trigger]`)), chromedp.Query(chromedp.CSS("#token-dialog[open]"), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.CSS("#token-input"), c.opToken), chromedp.Click(chromedp.CSS("#token-save")))
	b.waitJS("the run asked for", `document.querySelector("#action-status [data-field=triggered]") !== null`, 10*time.Second)
	b.shot("schedules-3-triggered")
	var run string
	b.eval(`document.querySelector("#action-status [data-field=triggered]").textContent.replace(" Open ", "")`, &run)
	if !strings.HasPrefix(run, "nightly-") || !strings.HasSuffix(run, "-trigger") {
		t.Fatalf("triggered run %q", run)
	}
	// The scheduler creates it within a second or so; its batch page
	// then shows it finish.
	b.do("open the run", chromedp.Click(chromedp.CSS("#action-status [data-field=triggered]")), chromedp.Query(chromedp.CSS("body"), chromedp.NodeVisible))
	for deadline := time.Now().Add(time.Minute); ; {
		var found bool
		b.eval(`document.querySelector("#batch") !== null`, &found)
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s was not created within a minute", run)
		}
		// Not created yet: the page is the 404 page; load it again once the
		// API knows the batch (the API's answer is the event waited on).
		b.waitJS("the run to exist", `fetch("/api/v1/batches/`+run+`").then(r => r.ok)`, time.Minute)
		b.do("reload the run", chromedp.Reload())
	}
	b.waitJS("the run to finish", `document.querySelector("#batch [data-field=state]").textContent === "finished"`, time.Minute)

	// The schedule page lists the run, finished, with its counts.
	b.do("back to the schedule", chromedp.Navigate(c.base+"/schedules/nightly"), chromedp.Query(chromedp.CSS("table.runs"), chromedp.NodeVisible))
	if r := b.text(`table.runs tr[data-batch="` + run + `"]`); !strings.Contains(r, "finished") || !strings.Contains(r, "20 ok") {
		t.Errorf("run row: %q", r)
	}
	b.shot("schedules-4-run")

	// Pause, with a note.
	b.eval(`window.prompt = () => "maintenance window"; null`, nil)
	b.do("pause", chromedp.Click(chromedp.CSS(`[data-action=pause]`)))
	b.waitJS("paused", `document.querySelector("#schedule [data-field=state]").textContent === "paused"`, 10*time.Second)
	b.do("reload paused", chromedp.Reload(), chromedp.Query(chromedp.CSS(".pause-note"), chromedp.NodeVisible))
	if n := b.text(".pause-note"); !strings.Contains(n, "maintenance window") {
		t.Errorf("pause note: %q", n)
	}
	b.shot("schedules-5-paused")
	b.do("the list, paused", chromedp.Navigate(c.base+"/schedules"), chromedp.Query(chromedp.CSS(`tr[data-schedule="nightly"]`), chromedp.NodeVisible))
	if row := b.text(`tr[data-schedule="nightly"]`); !strings.Contains(row, "paused") || !strings.Contains(row, "finished") {
		t.Errorf("schedule row once paused: %q", row)
	}

	b.onPhone("/schedules/nightly", "#schedule", "schedules-6-phone")
}
