package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Live progress: how often a stream looks at its followers' memory (no
// etcd read), and how often it sends a comment to keep proxies from
// closing an idle stream.
const (
	streamTick      = 250 * time.Millisecond
	streamHeartbeat = 15 * time.Second
	maxStreamed     = 100
)

// events answers GET /api/v1/events?batch=ID[&batch=ID...]: a
// Server-Sent Events stream of "progress" events, one per batch whenever
// its counts change (at most four a second), until the client goes. The
// counts come from the batches' followers, shared by every client.
func (s *Server) events(req *request) error {
	ids := req.r.URL.Query()["batch"]
	if len(ids) == 0 {
		return badRequest("name the batches to follow: ?batch=ID (repeat it for several, at most %d)", maxStreamed)
	}
	if len(ids) > maxStreamed {
		return badRequest("%d batches: follow at most %d in one stream", len(ids), maxStreamed)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var fs []*follower
	var releases []func()
	defer func() {
		for _, release := range releases {
			release()
		}
	}()
	for _, id := range ids {
		req.r.SetPathValue("batch", id)
		spec, err := s.batchSpec(req)
		if err != nil {
			return err
		}
		f, release, err := s.hub.acquire(req.ctx, spec)
		if err != nil {
			return err
		}
		fs = append(fs, f)
		releases = append(releases, release)
	}
	ctx := req.r.Context() // the stream outlives the request timeout
	rc := http.NewResponseController(req.w)
	rc.SetWriteDeadline(time.Time{})
	h := req.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	req.w.WriteHeader(http.StatusOK)
	if s.metrics != nil {
		s.metrics.SSEClients.Inc()
		defer s.metrics.SSEClients.Dec()
	}
	fmt.Fprintf(req.w, "retry: 2000\n\n")
	sent := make([]string, len(fs))
	tick := time.NewTicker(streamTick)
	defer tick.Stop()
	lastWrite := time.Now()
	first := true
	for {
		for i, f := range fs {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			p, err := s.progress(pctx, f)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				continue // etcd hiccup: the next tick tries again
			}
			b, _ := json.Marshal(p)
			if string(b) == sent[i] {
				continue
			}
			sent[i] = string(b)
			fmt.Fprintf(req.w, "event: progress\ndata: %s\n\n", b)
			lastWrite = time.Now()
		}
		if time.Since(lastWrite) > streamHeartbeat {
			fmt.Fprintf(req.w, ": keepalive\n\n")
			lastWrite = time.Now()
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		if first {
			if rec, ok := req.w.(*recorder); ok {
				now := time.Now()
				rec.firstAt = &now
			}
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		case <-tick.C:
		}
	}
}
