package web

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/patrol-dev/patrol/internal/batchinput"
	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

// submitBody is POST /api/v1/batches's body: what `patrol submit` takes,
// with the inventory inline.
type submitBody struct {
	BatchID string            `json:"batch_id"`
	Check   string            `json:"check"`
	Params  map[string]string `json:"params"`
	// Inventory is an inventory's text in any format `patrol submit -i`
	// reads (a host list, Ansible INI, YAML or JSON); Hosts is a plain list
	// of host names instead.
	Inventory     string   `json:"inventory"`
	Hosts         []string `json:"hosts"`
	Limit         string   `json:"limit"`
	Timeout       string   `json:"timeout"`
	MaxAttempts   int      `json:"max_attempts"`
	Backoff       string   `json:"backoff"`
	MaxBackoff    string   `json:"max_backoff"`
	RetryFailures bool     `json:"retry_failures"`
	MaxFailures   string   `json:"max_failures"`
	Parallel      int      `json:"parallel"`
	Priority      string   `json:"priority"`
}

// submit answers POST /api/v1/batches: it validates as `patrol submit`
// does, and writes nothing unless everything is valid and fits in etcd.
func (s *Server) submit(req *request) error {
	var b submitBody
	if err := decodeJSON(req, &b); err != nil {
		return err
	}
	if b.BatchID != "" {
		if err := queue.ValidateBatchID(b.BatchID); err != nil {
			return badRequest("batch_id: %v", err)
		}
	}
	in, err := readBatchBody(b)
	if err != nil {
		return err
	}
	hosts := in.Hosts
	plan := queue.PlanBatch(hosts, 0)
	if err := s.q.CheckFits(req.ctx, plan); err != nil {
		return &apiError{http.StatusInsufficientStorage, err.Error()}
	}
	id := b.BatchID
	if id == "" {
		id = queue.NewBatchID(time.Now())
	}
	spec, existed, err := s.q.Submit(req.ctx, queue.SubmitRequest{ID: id, Check: in.Check, Params: in.Params, Policy: in.Policy, Priority: in.Priority, Hosts: hosts})
	if errors.Is(err, queue.ErrBatchExists) {
		return &apiError{http.StatusConflict, fmt.Sprintf("batch ID %s is already used by a batch with other content: choose another batch_id, or leave it out for a generated one", id)}
	}
	if err != nil {
		return err
	}
	s.log.Info().Str("batch", spec.ID).Int("hosts", spec.Hosts).Str("check", spec.Check).Str("token", req.caller.name).Bool("existed", existed).Msg("web: submit")
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	writeJSON(req.w, status, map[string]any{"batch_id": spec.ID, "hosts": spec.Hosts, "existed": existed})
	return nil
}

// submitHosts reads the hosts of a submit: its inventory text, read as
// `patrol submit -i` reads a file, or its list of names; then --limit.
func submitHosts(b submitBody) ([]inventory.Host, error) {
	text := b.Inventory
	switch {
	case text != "" && len(b.Hosts) > 0:
		return nil, badRequest("give the hosts once: \"inventory\" (an inventory's text) or \"hosts\" (a list of names), not both")
	case text == "" && len(b.Hosts) == 0:
		return nil, badRequest("no hosts: give \"inventory\" (a host list, Ansible INI, YAML or JSON inventory, as text) or \"hosts\" (a list of names)")
	case len(b.Hosts) > 0:
		for _, h := range b.Hosts {
			if strings.ContainsAny(h, " \t\r\n#") || h == "" {
				return nil, badRequest("hosts: %q is not a host name; give one name (with an optional :port) per entry", h)
			}
		}
		text = strings.Join(b.Hosts, "\n") + "\n"
	}
	// The inventory is read from a file of its own in a directory of its
	// own: Load also reads group_vars/ and host_vars/ beside the file, and
	// there must be none.
	dir, err := os.MkdirTemp("", "patrol-web-inventory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "inventory")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return nil, badRequest("inventory: %s", strings.ReplaceAll(err.Error(), path, "inventory"))
	}
	hosts := inv.Hosts()
	if b.Limit != "" {
		if hosts, err = inv.Select(b.Limit); err != nil {
			return nil, badRequest("limit %q: %v", b.Limit, err)
		}
	}
	return hosts, nil
}

// batchPatch is the batch fields of a request: a submit's, a new
// schedule's, or the ones a schedule update changes (nil: unchanged).
type batchPatch struct {
	Check         *string           `json:"check"`
	Params        map[string]string `json:"params"`
	Inventory     string            `json:"inventory"`
	Hosts         []string          `json:"hosts"`
	Limit         string            `json:"limit"`
	Timeout       *string           `json:"timeout"`
	MaxAttempts   *int              `json:"max_attempts"`
	Backoff       *string           `json:"backoff"`
	MaxBackoff    *string           `json:"max_backoff"`
	RetryFailures *bool             `json:"retry_failures"`
	MaxFailures   *string           `json:"max_failures"`
	Parallel      *int              `json:"parallel"`
	Priority      *string           `json:"priority"`
}

// given is whether the patch changes anything.
func (p batchPatch) given() bool {
	return p.Check != nil || p.Params != nil || p.Inventory != "" || p.Hosts != nil || p.Limit != "" || p.Timeout != nil ||
		p.MaxAttempts != nil || p.Backoff != nil || p.MaxBackoff != nil || p.RetryFailures != nil || p.MaxFailures != nil || p.Parallel != nil || p.Priority != nil
}

func ptr[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// readBatchBody reads and checks a submit's check, params, policy and
// hosts as `patrol submit` does.
func readBatchBody(b submitBody) (batchinput.Input, error) {
	return readBatch(batchinput.Input{}, batchPatch{Check: &b.Check, Params: b.Params, Inventory: b.Inventory, Hosts: b.Hosts, Limit: b.Limit,
		Timeout: ptr(b.Timeout), MaxAttempts: ptr(b.MaxAttempts), Backoff: ptr(b.Backoff), MaxBackoff: ptr(b.MaxBackoff),
		RetryFailures: &b.RetryFailures, MaxFailures: &b.MaxFailures, Parallel: &b.Parallel, Priority: ptr(b.Priority)}, true, nil)
}

// readBatch reads p's fields over base and checks them with
// batchinput.Apply, as `patrol submit` and `patrol schedule` check their
// flags: with full (a submit, a create) the fields not given take their
// defaults and the hosts and check are required; otherwise they keep
// base's values, and stored, if not nil, gives the hosts a changed check
// or params are checked against when no hosts are given.
func readBatch(base batchinput.Input, p batchPatch, full bool, stored func() ([]inventory.Host, error)) (batchinput.Input, error) {
	if full {
		base = batchinput.Defaults()
		if p.Check == nil {
			p.Check = new("")
		}
	}
	ch := batchinput.Change{Check: p.Check, Params: p.Params, MaxAttempts: p.MaxAttempts, RetryFailures: p.RetryFailures,
		MaxFailures: p.MaxFailures, Parallel: p.Parallel}
	for _, d := range []struct {
		name string
		text *string
		out  **time.Duration
	}{
		{"timeout", p.Timeout, &ch.Timeout},
		{"backoff", p.Backoff, &ch.Backoff},
		{"max_backoff", p.MaxBackoff, &ch.MaxBackoff},
	} {
		if d.text == nil {
			continue
		}
		v, err := time.ParseDuration(*d.text)
		if err != nil {
			return base, badRequest("%s %q: write a duration like 500ms, 5s or 2m", d.name, *d.text)
		}
		*d.out = &v
	}
	if p.Priority != nil {
		priority, err := queue.ParsePriority(*p.Priority)
		if err != nil {
			return base, badRequest("%v", err)
		}
		ch.Priority = &priority
	}
	if full || p.Inventory != "" || p.Hosts != nil || p.Limit != "" {
		hosts, err := submitHosts(submitBody{Inventory: p.Inventory, Hosts: p.Hosts, Limit: p.Limit})
		if err != nil {
			return base, err
		}
		ch.Hosts = hosts
	}
	in, err := batchinput.Apply(base, ch, stored)
	var bad *batchinput.Invalid
	switch {
	case errors.Is(err, batchinput.ErrNoCheck):
		return in, badRequest("no check: give \"check\", one of %s", strings.Join(check.Types(), ", "))
	case errors.As(err, &bad):
		return in, badRequest("%v", err)
	}
	return in, err
}
