package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// apiError is an error answered with its HTTP status; its message says
// what to fix.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// errorBody is every error's JSON.
type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// crossOrigin refuses browser writes from another origin (CSRF).
var crossOrigin = http.NewCrossOriginProtection()

// wrap runs a route's handler: it checks the origin of writes, the token
// and role, the body's type and size, bounds the handler's time, and
// records the answer in metrics and the log (never the token).
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		req := &request{w: rec, r: r, route: &rt}
		err := s.admit(req)
		if err == nil {
			timeout := rt.timeout
			if timeout == 0 {
				timeout = s.cfg.RequestTimeout
			}
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			req.ctx = ctx
			err = rt.handle(req)
			cancel()
		}
		if err != nil {
			writeError(rec, r, s.classify(err))
		}
		d := time.Since(start)
		if rec.firstAt != nil {
			d = rec.firstAt.Sub(start) // a stream counts until its first event
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.observe(rt.pattern, code, d)
		ev := s.log.Debug()
		if code >= 500 {
			ev = s.log.Warn().AnErr("error", err)
		}
		ev.Str("method", r.Method).Str("route", rt.pattern).Int("code", code).Dur("took", time.Since(start)).
			Str("token", req.caller.name).Str("remote", r.RemoteAddr).Msg("web request")
	})
}

// admit checks a request before its handler runs.
func (s *Server) admit(req *request) error {
	r, rt := req.r, req.route
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := crossOrigin.Check(r); err != nil {
			return &apiError{http.StatusForbidden, "cross-origin write refused (CSRF protection): send writes from the console's own page, or from a client that sends no Origin or Sec-Fetch-Site header, such as curl"}
		}
	}
	c, err := s.authenticate(r)
	if err != nil {
		return &apiError{http.StatusUnauthorized, err.Error()}
	}
	req.caller = c
	if e := s.authorize(c, rt.need); e != nil {
		return e
	}
	if rt.body > 0 {
		if r.ContentLength > rt.body {
			return tooLarge(rt.body)
		}
		if r.ContentLength != 0 || r.Body != http.NoBody {
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if mt != "application/json" && r.ContentLength != 0 {
				return &apiError{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send JSON with Content-Type: application/json", r.Header.Get("Content-Type"))}
			}
		}
		r.Body = http.MaxBytesReader(req.w, r.Body, rt.body)
	}
	return nil
}

func tooLarge(limit int64) *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %s: send less (a submit's limit is patrol web --max-body)", queue.BytesText(limit))}
}

// classify turns a handler's error into what the client is told.
func (s *Server) classify(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return tooLarge(mbe.Limit)
	case errors.Is(err, queue.ErrBatchNotFound):
		return &apiError{http.StatusNotFound, "no such batch under this server's --prefix: check the ID (GET /api/v1/batches lists them)"}
	case errors.Is(err, queue.ErrHostNotFound):
		return &apiError{http.StatusNotFound, err.Error() + ": check the host name as the inventory wrote it"}
	case errors.Is(err, queue.ErrBadBatchID):
		return badRequest("%v", err)
	case queue.IsNoSpace(err):
		return &apiError{http.StatusInsufficientStorage, "etcd is out of space (NOSPACE alarm) and takes no write: free space (patrol delete, patrol cancel) and run `patrol space --reclaim`"}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusGatewayTimeout, "etcd did not answer in time; try again, and check `patrol space` and etcd's health"}
	case errors.Is(err, context.Canceled):
		return &apiError{499, "request cancelled"}
	}
	return &apiError{http.StatusInternalServerError, "reading or writing etcd failed: " + err.Error()}
}

// writeError answers err as JSON under /api/, else as a small HTML page.
func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	if rec, ok := w.(*recorder); ok && rec.code != 0 {
		return // a stream already answered; it just ends
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, e.status, errorBody{Error: e.msg, Status: e.status})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="/static/console.css"><title>Patrol: %d</title><main><h1>%d %s</h1><p>%s</p><p><a href="/">All batches</a></p></main>`,
		e.status, e.status, http.StatusText(e.status), template.HTMLEscapeString(e.msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// decodeJSON reads the request's JSON body into v, refusing unknown
// fields and trailing data.
func decodeJSON(req *request, v any) error {
	dec := json.NewDecoder(req.r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		if dec.More() {
			return badRequest("the body holds more than one JSON value: send one object")
		}
		if _, err := dec.Token(); err != io.EOF {
			return badRequest("the body holds more than one JSON value: send one object")
		}
		return nil
	case errors.As(err, &mbe):
		return tooLarge(mbe.Limit)
	case errors.Is(err, io.EOF):
		return badRequest("empty body: send a JSON object (see docs/openapi.yaml)")
	case errors.As(err, &se):
		return badRequest("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return badRequest("field %q: want %s, got a JSON %s", te.Field, te.Type, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return badRequest("%s: see docs/openapi.yaml for the fields this takes", strings.TrimPrefix(err.Error(), "json: "))
	}
	return badRequest("malformed JSON: %v", err)
}

// batchParam is the {batch} path value, validated.
func batchParam(req *request) (string, error) {
	id := req.r.PathValue("batch")
	if err := queue.ValidateBatchID(id); err != nil {
		return "", badRequest("batch ID %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return id, nil
}

// intParam reads an integer query parameter within [lo, hi].
func intParam(req *request, name string, def, lo, hi int) (int, error) {
	v := req.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s=%q: give a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// recorder remembers the status written, and when a stream first flushed.
type recorder struct {
	http.ResponseWriter
	code    int
	firstAt *time.Time
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush,
// SetWriteDeadline).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func jsonEncode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}
