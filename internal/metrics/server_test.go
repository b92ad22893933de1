package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/metrics"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// serve runs a metrics server until the test ends.
func serve(t *testing.T, cfg metrics.ServerConfig) string {
	t.Helper()
	cfg.Addr, cfg.Log = "127.0.0.1:0", zerolog.Nop()
	srv, err := metrics.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() { serveErr = srv.Serve(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if serveErr != nil {
			t.Errorf("Serve: %v", serveErr)
		}
	})
	return "http://" + srv.Addr()
}

func TestServerEndpoints(t *testing.T) {
	var notReady atomic.Pointer[error]
	why := errors.New("etcd does not answer")
	notReady.Store(&why)
	base := serve(t, metrics.ServerConfig{
		Gatherer: metrics.NewRegistry("worker", "v9"),
		Ready: func(context.Context) error {
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		},
	})

	if code, body := get(t, base+"/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "etcd does not answer") {
		t.Errorf("/readyz while not ready = %d %q, want 503 with the reason", code, body)
	}
	notReady.Store(nil)
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz when ready = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, `patrol_build_info{goversion="`) || !strings.Contains(body, `role="worker",version="v9"} 1`) {
		t.Errorf("/metrics = %d, without patrol_build_info:\n%s", code, body)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without Pprof = %d, want 404", code)
	}
}

func TestServerPprofOnlyWhenAsked(t *testing.T) {
	base := serve(t, metrics.ServerConfig{Gatherer: metrics.NewRegistry("dev", "v9"), Pprof: true})
	if code, body := get(t, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ with Pprof = %d, want 200 with the profile index", code)
	}
	if code, body := get(t, base+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile = %d, want 200", code)
	}
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz with no Ready func = %d, want 200", code)
	}
}

func TestListenOnABusyPortSaysWhatToDo(t *testing.T) {
	srv, err := metrics.Listen(metrics.ServerConfig{Addr: "127.0.0.1:0", Gatherer: metrics.NewRegistry("dev", "v9")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx) })
	defer func() { cancel(); wg.Wait() }()
	_, err = metrics.Listen(metrics.ServerConfig{Addr: srv.Addr(), Gatherer: metrics.NewRegistry("dev", "v9")})
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("second Listen on %s: %v; want an error naming --metrics-addr", srv.Addr(), err)
	}
}
