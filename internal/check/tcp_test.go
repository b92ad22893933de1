package check

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
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

// banner starts a loopback server that, for each connection, writes
// greeting, then echoes each line it reads prefixed by "echo: ". It
// returns the inventory host pointing at it. The server stops, and its
// goroutines end, before the test's other cleanups.
func banner(t *testing.T, greeting string) inventory.Host {
	t.Helper()
	ln := mustListen(t, "tcp", "127.0.0.1:0")
	var wg sync.WaitGroup
	conns := make(chan net.Conn, 16)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			wg.Go(func() {
				defer c.Close()
				io.WriteString(c, greeting)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo: %s\r\n", sc.Text())
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		for done := false; !done; {
			select {
			case c := <-conns:
				c.Close()
			default:
				done = true
			}
		}
		wg.Wait()
	})
	return hostAt(t, ln.Addr().String())
}

func TestTCPSendExpect(t *testing.T) {
	smtp := banner(t, "220 mail.example.com ESMTP\r\n")
	binary := banner(t, "\x00\x01SSH-1.0\x1b[31m\r\n")
	silent := hostAt(t, openPort(t, "tcp", "127.0.0.1:0")) // accepts, never writes

	tests := []struct {
		name   string
		params map[string]string
		host   inventory.Host
		status Status
		prefix string
		reply  string // Details["reply"], "" for absent
	}{
		{"banner matches", map[string]string{"expect": `^220 `}, smtp,
			StatusOK, smtp.Name + ` replied "220 mail.example.com ESMTP\r\n", matching /^220 /, in `, `"220 mail.example.com ESMTP\r\n"`},
		{"banner does not match: judged at the timeout", map[string]string{"expect": `^SSH-2\.0`, "timeout": "1s"}, smtp,
			StatusFail, smtp.Name + ` replied "220 mail.example.com ESMTP\r\n", which does not match /^SSH-2\.0/`, `"220 mail.example.com ESMTP\r\n"`},
		{"send then expect the echo", map[string]string{"send": `HELO {{.Vars.me}}\r\n`, "expect": `echo: HELO patrol-\w+\r\n`},
			withVars(smtp, "me", "patrol-worker1"),
			StatusOK, smtp.Name + ` replied "220 mail.example.com ESMTP\r\necho: HELO patrol-worker1\r\n", matching`, ""},
		{"binary reply is quoted on one line", map[string]string{"expect": `^SSH-2`, "timeout": "1s"}, binary,
			StatusFail, binary.Name + ` replied "\x00\x01SSH-1.0\x1b[31m\r\n", which does not match /^SSH-2/`, ""},
		{"send only", map[string]string{"send": `QUIT\r\n`}, smtp,
			StatusOK, "connected to " + smtp.Name + " and sent 6 bytes in ", ""},
		{"silent host times out", map[string]string{"expect": "^220", "timeout": "1s"}, silent,
			StatusError, silent.Name + ": no reply matching /^220/: timed out after ", `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustNew(t, "tcp", tt.params).Run(context.Background(), tt.host)
			expect(t, res, tt.status, tt.prefix)
			if res.Details["connect_ms"] == "" {
				t.Errorf("Details = %v, want connect_ms", res.Details)
			}
			if tt.reply != "" && res.Details["reply"] != tt.reply {
				t.Errorf("Details[reply] = %s, want %s", res.Details["reply"], tt.reply)
			}
		})
	}
}

// TestTCPExpectHangUp: a host that closes the connection is judged at once
// on what it sent.
func TestTCPExpectHangUp(t *testing.T) {
	ln := mustListen(t, "tcp", "127.0.0.1:0")
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "421 too busy\r\n")
		c.Close()
	}()
	t.Cleanup(func() { ln.Close(); <-served })

	h := hostAt(t, ln.Addr().String())
	res := mustNew(t, "tcp", map[string]string{"expect": "^220", "timeout": "1h"}).Run(context.Background(), h)
	expect(t, res, StatusFail, h.Name+` replied "421 too busy\r\n", which does not match /^220/`)
}

// TestTCPExpectLimit: a host that talks without end is judged on its
// first 4 KiB.
func TestTCPExpectLimit(t *testing.T) {
	h := banner(t, strings.Repeat("x", 10<<10)+"OK\r\n")
	res := mustNew(t, "tcp", map[string]string{"expect": "OK"}).Run(context.Background(), h)
	expect(t, res, StatusFail, h.Name+` replied "xxxx`)
	if got, want := len(res.Details["reply"]), expectLimit+2; got != want {
		t.Errorf("len(Details[reply]) = %d, want %d (4 KiB, quoted)", got, want)
	}
}

func TestTCPExpectCancelled(t *testing.T) {
	silent := hostAt(t, openPort(t, "tcp", "127.0.0.1:0"))
	ctx, cancel := context.WithCancel(context.Background())
	c := mustNew(t, "tcp", map[string]string{"expect": "^220"})
	done := make(chan Result)
	go func() { done <- c.Run(ctx, silent) }()
	cancel()
	expect(t, <-done, StatusError, "")
}

func withVars(h inventory.Host, kv ...string) inventory.Host {
	h.Vars = map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		h.Vars[kv[i]] = kv[i+1]
	}
	return h
}
