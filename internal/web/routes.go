package web

import (
	"context"
	"net/http"
	"time"
)

// route is one pattern the server answers, and what it takes.
type route struct {
	pattern string // net/http ServeMux pattern: "METHOD /path/{wildcard}"
	need    Role   // "" for reads anyone may make
	api     bool   // answers JSON (errors too); else HTML or an asset
	// body is the most a request body may hold (0: none is read).
	body    int64
	timeout time.Duration // bounds the handler's etcd work; 0: the default
	handle  func(*request) error
}

// allRoutes is every route the server answers. A test checks that
// docs/openapi.yaml lists every /api/v1/ route here, and no other.
func (s *Server) allRoutes() []route {
	rs := []route{
		{pattern: "GET /api/v1/batches", api: true, handle: s.listBatches},
		{pattern: "POST /api/v1/batches", api: true, need: RoleOperator, body: s.cfg.MaxBody, timeout: 4 * s.cfg.RequestTimeout, handle: s.submit},
		{pattern: "GET /api/v1/batches/{batch}", api: true, handle: s.getBatch},
		{pattern: "GET /api/v1/batches/{batch}/results", api: true, handle: s.getResults},
		{pattern: "GET /api/v1/batches/{batch}/hosts/{host}", api: true, handle: s.getHost},
		{pattern: "POST /api/v1/batches/{batch}/cancel", api: true, need: RoleOperator, body: smallBody, handle: s.cancel},
		{pattern: "POST /api/v1/batches/{batch}/retry", api: true, need: RoleOperator, body: smallBody, handle: s.retry},
		{pattern: "GET /api/v1/workers", api: true, handle: s.getWorkers},
		{pattern: "GET /api/v1/leader", api: true, handle: s.getLeader},
		{pattern: "GET /api/v1/whoami", api: true, handle: s.whoami},
		{pattern: "GET /api/v1/events", api: true, handle: s.events},

		{pattern: "GET /{$}", handle: s.pageBatches},
		{pattern: "GET /batches/{batch}", handle: s.pageBatch},
		{pattern: "GET /batches/{batch}/hosts/{host}", handle: s.pageHost},
		{pattern: "GET /workers", handle: s.pageWorkers},
		{pattern: "GET /leader", handle: s.pageLeader},
		{pattern: "GET /static/{file}", handle: s.static},
	}
	return append(rs, s.scheduleRoutes()...) // schedules.go
}

// request is what a handler gets: the request, the writer, the caller,
// and a context bounded by the route's timeout.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	ctx    context.Context
	caller caller
	route  *route
}
