package check

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

func TestTCP(t *testing.T) {
	open := openPort(t, "tcp", "127.0.0.1:0")
	refused := closedPort(t)
	openHost := hostAt(t, open)

	tests := []struct {
		name   string
		params map[string]string
		host   inventory.Host
		status Status
		prefix string
	}{
		{"open port", nil, openHost, StatusOK, "connected to " + open + " in "},
		{"refused", nil, hostAt(t, refused), StatusFail, "connect " + refused + ": connection refused"},
		{"port param overrides host port",
			map[string]string{"port": "{{.Vars.port}}"},
			inventory.Host{Name: "lo", Address: "127.0.0.1", Port: 1, Vars: map[string]string{"port": strconv.Itoa(openHost.Port)}},
			StatusOK, "connected to " + open},
		{"no port", nil, inventory.Host{Name: "web1", Address: "127.0.0.1"},
			StatusError, "host web1 has no port: write it as host:port in the inventory or pass --param port=N"},
		{"port does not render", map[string]string{"port": "{{.Vars.port}}"}, openHost,
			StatusError, "host " + open + ": param port: template: port:1:7: executing \"port\" at <.Vars.port>: map has no entry for key \"port\""},
		{"dns failure", map[string]string{"timeout": "2s"},
			inventory.Host{Name: "nowhere.invalid:80", Address: "nowhere.invalid", Port: 80},
			StatusError, "connect nowhere.invalid:80: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustNew(t, "tcp", tt.params).Run(context.Background(), tt.host)
			expect(t, res, tt.status, tt.prefix)
		})
	}
}

func TestTCPContext(t *testing.T) {
	c := mustNew(t, "tcp", nil)
	h := hostAt(t, openPort(t, "tcp", "127.0.0.1:0"))

	res := c.Run(cancelled(), h)
	expect(t, res, StatusError, "connect "+h.Name+": cancelled")

	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	res = c.Run(past, h)
	expect(t, res, StatusError, "connect "+h.Name+": timed out after ")
}

func TestTCPIPv6(t *testing.T) {
	skipWithoutIPv6(t)
	open := openPort(t, "tcp", "[::1]:0")
	h := hostAt(t, open)
	if h.Address != "::1" {
		t.Fatalf("host %+v: want address ::1", h)
	}
	expect(t, mustNew(t, "tcp", nil).Run(context.Background(), h), StatusOK, "connected to "+open)
}
