package web

import (
	"net/http"

	"github.com/patrol-dev/patrol/queue"
)

// getWorkers answers GET /api/v1/workers.
func (s *Server) getWorkers(req *request) error {
	rows, err := s.q.WorkerRows(req.ctx)
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []queue.WorkerRow{}
	}
	writeJSON(req.w, http.StatusOK, map[string]any{"workers": rows})
	return nil
}

// leaderView is GET /api/v1/leader's answer.
type leaderView struct {
	Leading bool          `json:"leading"`
	Leader  *queue.Leader `json:"leader,omitempty"`
	Message string        `json:"message,omitempty"`
}

func (s *Server) readLeader(req *request) (leaderView, error) {
	l, ok, err := s.q.CurrentLeader(req.ctx)
	if err != nil {
		return leaderView{}, err
	}
	if !ok {
		return leaderView{Message: "no scheduler is leading under " + s.q.Keys().Prefix() + ": start one with `patrol scheduler` (or `patrol dev`)"}, nil
	}
	return leaderView{Leading: true, Leader: &l}, nil
}

// getLeader answers GET /api/v1/leader.
func (s *Server) getLeader(req *request) error {
	v, err := s.readLeader(req)
	if err != nil {
		return err
	}
	writeJSON(req.w, http.StatusOK, v)
	return nil
}

// whoami answers GET /api/v1/whoami: who the token is, and whether this
// server takes writes. The console asks it before keeping a token.
func (s *Server) whoami(req *request) error {
	v := map[string]any{"writes_enabled": s.tokens.Len() > 0, "authenticated": req.caller.role != ""}
	if req.caller.role != "" {
		v["name"], v["role"] = req.caller.name, req.caller.role
	}
	writeJSON(req.w, http.StatusOK, v)
	return nil
}
