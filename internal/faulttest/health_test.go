//go:build linux

package faulttest

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHealthAndSystemdNotify: a worker whose etcd traffic goes through a
// proxy tells systemd READY=1 once registered, answers /livez and /readyz,
// fails /readyz while etcd does not answer (the proxy holds its requests)
// and recovers when it answers again, and tells systemd STOPPING=1 on
// SIGTERM.
func TestHealthAndSystemdNotify(t *testing.T) {
	h := setup(t)
	px := newProxy(t, h.env.Endpoint)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	w := h.startEnv("worker", []string{"PATROL_ENDPOINTS=" + px.Addr(), "NOTIFY_SOCKET=" + sock}, "worker", "--id", "w1", "--lease-ttl", "5s")

	if got := receive(t, notify); got != "READY=1" {
		t.Fatalf("systemd got %q first, want READY=1", got)
	}
	base := "http://" + w.MetricsAddr(t)
	if code, body := httpGet(t, base+"/livez"); code != 200 {
		t.Fatalf("/livez = %d %q, want 200", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz once ready = %d %q, want 200", code, body)
	}

	px.Hold()
	code, body := httpGet(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "etcd does not answer") {
		t.Fatalf("/readyz with etcd held = %d %q, want 503 saying etcd does not answer", code, body)
	}
	if code, _ := httpGet(t, base+"/livez"); code != 200 {
		t.Fatalf("/livez with etcd held = %d, want 200: the process is alive", code)
	}
	t.Logf("etcd held: /readyz %d %q", code, strings.TrimSpace(body))
	px.Release()
	// The client reconnects; /readyz answers 200 again once it has.
	deadline := time.Now().Add(15 * time.Second)
	for code, body = httpGet(t, base+"/readyz"); code != 200; code, body = httpGet(t, base+"/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after etcd answers again = %d %q, want 200", code, body)
		}
	}

	w.Signal(t, syscall.SIGTERM)
	if got := receive(t, notify); got != "STOPPING=1" {
		t.Fatalf("systemd got %q on SIGTERM, want STOPPING=1", got)
	}
	if err := w.Wait(t, 15*time.Second); err != nil {
		t.Fatalf("worker after SIGTERM: %v, want exit 0", err)
	}
}

// receive reads one notification, failing after 15s.
func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("waiting for a systemd notification: %v", err)
	}
	return string(buf[:n])
}

// httpGet returns a GET's status and body; each call waits at most 10s.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
