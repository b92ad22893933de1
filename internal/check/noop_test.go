package check

import (
	"context"
	"testing"

	"github.com/patrol-dev/patrol/internal/inventory"
)

func TestNoop(t *testing.T) {
	h := inventory.Host{Name: "web1", Address: "web1"}
	tests := []struct {
		name   string
		params map[string]string
		ctx    context.Context
		status Status
		prefix string
	}{
		{"ok", nil, context.Background(), StatusOK, "noop: ok after 0s"},
		{"sleeps", map[string]string{"sleep": "1ms"}, context.Background(), StatusOK, "noop: ok after 1ms"},
		{"fail", map[string]string{"fail": "true"}, context.Background(), StatusFail, "noop: asked to fail"},
		{"warn", map[string]string{"warn": "true"}, context.Background(), StatusWarn, "noop: asked to warn"},
		{"cancelled while sleeping", map[string]string{"sleep": "1h"}, cancelled(), StatusError, "noop: cancelled"},
		{"cancelled before running", nil, cancelled(), StatusError, "noop: cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, mustNew(t, "noop", tt.params).Run(tt.ctx, h), tt.status, tt.prefix)
		})
	}
}

func TestRunNeverPanics(t *testing.T) {
	h := inventory.Host{Name: "web1:80", Address: "127.0.0.1", Port: 80}
	var nilCtx context.Context // a caller bug Run must survive
	params := map[string]map[string]string{"exec": {"name": "true"}, "ssh": {"name": "true"}, "dns": {"name": "example.com", "server": "127.0.0.1:53"}}
	opts := Options{Exec: map[string][]string{"true": {"/bin/true"}}, SSH: map[string]string{"true": "true"}}
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			c, err := NewWith(typ, params[typ], opts)
			if err != nil {
				t.Fatal(err)
			}
			res := c.Run(nilCtx, h)
			expect(t, res, StatusError, "internal fault: ")
		})
	}
}
