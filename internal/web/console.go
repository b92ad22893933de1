package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
)

//go:embed assets
var assets embed.FS

// pages are the console's templates, each with the shared layout.
var pages = func() map[string]*template.Template {
	funcs := template.FuncMap{
		"statuses": queue.Statuses,
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return time.Since(t).Round(time.Second).String() + " ago"
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"until": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			if d := time.Until(t); d > time.Hour {
				return "in " + strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
			} else if d > 0 {
				return "in " + d.Round(time.Second).String()
			}
			return "due now"
		},
		"round":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
		"join":    strings.Join,
		"cadence": scheduler.CadenceText,
		"ms":      func(n int64) string { return (time.Duration(n) * time.Millisecond).String() },
		"pct": func(n, total int) string {
			if total == 0 {
				return "0"
			}
			return fmt.Sprintf("%.2f", 100*float64(n)/float64(total))
		},
		"failing": func(s queue.Status) bool { return s.Failed() },
		"hostpath": func(batch, host string) string {
			return "/batches/" + url.PathEscape(batch) + "/hosts/" + url.PathEscape(host)
		},
		"json": func(v any) (template.JS, error) {
			var b bytes.Buffer
			err := jsonEncode(&b, v)
			return template.JS(b.String()), err
		},
		"query": func(kv ...string) string {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					v.Set(kv[i], kv[i+1])
				}
			}
			if len(v) == 0 {
				return "?"
			}
			return "?" + v.Encode()
		},
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"batches", "batch", "host", "workers", "leader", "schedules", "schedule"} {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+name+".html"))
	}
	return out
}()

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Version string
	Data    any
}

func (s *Server) render(req *request, name, title string, data any) error {
	var b bytes.Buffer
	if err := pages[name].Execute(&b, page{Title: title, Nav: name, Version: s.cfg.Version, Data: data}); err != nil {
		return err
	}
	h := req.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	req.w.WriteHeader(http.StatusOK)
	_, err := req.w.Write(b.Bytes())
	return err
}

// pageBatches is the console's batch list.
func (s *Server) pageBatches(req *request) error {
	list, err := s.batchList(req)
	if err != nil {
		return err
	}
	qv := req.r.URL.Query()
	return s.render(req, "batches", "Batches", map[string]any{
		"List": list, "State": qv.Get("state"), "Check": qv.Get("check"), "Q": qv.Get("q"),
	})
}

// batchPage is the batch page's data.
type batchPage struct {
	View     batchView
	Query    resultsQuery
	Filter   string // the status filter as given
	Zone     string
	Search   string
	Page     resultsPage
	Failing  int
	Statuses []queue.Status
}

// pageBatch is the console's batch page: counts, then a page of hosts,
// failing ones first (when no filter is given and some failed).
func (s *Server) pageBatch(req *request) error {
	spec, err := s.batchSpec(req)
	if err != nil {
		return err
	}
	v, err := s.view(req.ctx, spec, 2*time.Second)
	if err != nil {
		return err
	}
	qv := req.r.URL.Query()
	failing := v.Counts[queue.StatusFail] + v.Counts[queue.StatusError] + v.Counts[queue.StatusDead]
	if _, given := qv["status"]; !given && failing > 0 {
		qv.Set("status", "fail,error,dead")
		req.r.URL.RawQuery = qv.Encode()
	}
	rq, err := parseResultsQuery(req)
	if err != nil {
		return err
	}
	p, err := s.results(req.ctx, spec, rq)
	if err != nil {
		return err
	}
	return s.render(req, "batch", "Batch "+spec.ID, batchPage{View: v, Query: rq, Filter: qv.Get("status"), Zone: rq.zone, Search: rq.prefix,
		Page: p, Failing: failing, Statuses: queue.Statuses()})
}

// pageHost is one host of a batch: its result or where it stands, every
// attempt, and the check's details.
func (s *Server) pageHost(req *request) error {
	spec, err := s.batchSpec(req)
	if err != nil {
		return err
	}
	host := req.r.PathValue("host")
	row, err := s.q.HostStatus(req.ctx, spec, host)
	if err != nil {
		return err
	}
	return s.render(req, "host", host+" in "+spec.ID, map[string]any{"Spec": spec, "Row": row})
}

func (s *Server) pageWorkers(req *request) error {
	rows, err := s.q.WorkerRows(req.ctx)
	if err != nil {
		return err
	}
	return s.render(req, "workers", "Workers", rows)
}

func (s *Server) pageLeader(req *request) error {
	v, err := s.readLeader(req)
	if err != nil {
		return err
	}
	return s.render(req, "leader", "Leader", v)
}

// static serves the console's CSS and JS from the binary.
func (s *Server) static(req *request) error {
	name := req.r.PathValue("file")
	if name != path.Base(name) || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".html") {
		return &apiError{http.StatusNotFound, "no such file"}
	}
	b, err := fs.ReadFile(assets, "assets/"+name)
	if err != nil {
		return &apiError{http.StatusNotFound, "no such file: " + name}
	}
	ct := "application/octet-stream"
	switch path.Ext(name) {
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".svg":
		ct = "image/svg+xml"
	}
	h := req.w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	req.w.WriteHeader(http.StatusOK)
	_, err = req.w.Write(b)
	return err
}
