package check

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

func TestPerfdata(t *testing.T) {
	tests := []struct {
		name   string
		output string
		text   string
		want   map[string]string // details besides output and exit_code
	}{
		{"none", "DISK OK\n", "DISK OK", map[string]string{}},
		{"one, every field", "TCP OK - 0.000 second response time|time=0.000389s;1;2;0.000000;10.000000\n", "TCP OK - 0.000 second response time",
			map[string]string{"perf.time": "0.000389", "perf.time.unit": "s", "perf.time.warn": "1", "perf.time.crit": "2",
				"perf.time.min": "0", "perf.time.max": "10"}},
		{"several, trailing separators", "LOAD OK|load1=0.040;1.000;2.000;0; load5=0.1;;;; \n", "LOAD OK",
			map[string]string{"perf.load1": "0.04", "perf.load1.warn": "1.000", "perf.load1.crit": "2.000", "perf.load1.min": "0",
				"perf.load5": "0.1"}},
		{"quoted labels", "OK | 'free space'=50%;20:;10: 'it''s'=3c\n", "OK",
			map[string]string{"perf.free space": "50", "perf.free space.unit": "%", "perf.free space.warn": "20:", "perf.free space.crit": "10:",
				"perf.it's": "3", "perf.it's.unit": "c"}},
		{"ranges", "OK|a=1;@10:20;~:30 b=-1.5e3KB;;;-2000;+.5\n", "OK",
			map[string]string{"perf.a": "1", "perf.a.warn": "@10:20", "perf.a.crit": "~:30",
				"perf.b": "-1500", "perf.b.unit": "KB", "perf.b.min": "-2000", "perf.b.max": "0.5"}},
		{"undetermined", "UNKNOWN|x=U\n", "UNKNOWN", map[string]string{"perf.x": "U"}},
		{"long text, then more perfdata", "DISK OK | /=10B\n/ is fine\n/var is fine | /var=20B\n/home=30B\n", "DISK OK",
			map[string]string{"perf./": "10", "perf./.unit": "B", "perf./var": "20", "perf./var.unit": "B", "perf./home": "30", "perf./home.unit": "B"}},
		{"what parses is kept, the rest noted", "OK | good=1 bad=abc ugly 'open=2 worse=1;2;3;4;5;6\n", "OK",
			map[string]string{"perf.good": "1", "perfdata": "good=1 bad=abc ugly 'open=2 worse=1;2;3;4;5;6",
				"perfdata_note": `performance data that does not parse was left out: bad=abc: value "abc" is not a number; "ugly": want label=value; ` +
					`"'open=2 worse=1;2;3;4;5;6": unterminated quoted label`}},
		{"a bad threshold", "OK | t=1s;x\n", "OK",
			map[string]string{"perfdata": "t=1s;x", "perfdata_note": `performance data that does not parse was left out: t=1s;x: warn "x" does not parse`}},
		{"the marker of dropped output is no message", "[patrol: first 10 bytes of output dropped, last 5 kept]\nmore|x=1\n", "more",
			map[string]string{"perf.x": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := exitResult(time.Now().Add(-time.Millisecond), "exec p", 0, tt.output, true)
			expect(t, res, StatusOK, "exec p: "+tt.text)
			if res.Message != "exec p: "+tt.text {
				t.Errorf("Message = %q, want %q", res.Message, "exec p: "+tt.text)
			}
			got := res.Details
			delete(got, "output")
			delete(got, "exit_code")
			if !equalMaps(got, tt.want) {
				t.Errorf("Details = %q\nwant %q", got, tt.want)
			}
		})
	}
	t.Run("a bad label and too many", func(t *testing.T) {
		var perf strings.Builder
		perf.WriteString("bad=x")
		for i := range 66 {
			perf.WriteString(" l" + strconv.Itoa(i) + "=1")
		}
		res := exitResult(time.Now(), "exec p", 0, "OK |"+perf.String(), true)
		note := res.Details["perfdata_note"]
		if strings.Count(note, "more than 64 labels") != 1 || !strings.HasSuffix(note, "; more than 64 labels: the 2 after the first 64 were left out") ||
			!strings.HasPrefix(note, "performance data that does not parse was left out: ") {
			t.Errorf("perfdata_note %q", note)
		}
	})
	t.Run("at most 64 labels", func(t *testing.T) {
		var perf strings.Builder
		for i := range 70 {
			perf.WriteString(" l" + strconv.Itoa(i) + "=1")
		}
		res := exitResult(time.Now(), "exec p", 0, "OK |"+perf.String(), true)
		if res.Details["perf.l63"] != "1" || res.Details["perf.l64"] != "" {
			t.Errorf("Details: perf.l63 %q, perf.l64 %q", res.Details["perf.l63"], res.Details["perf.l64"])
		}
		// Said once, with how many were dropped.
		if note := res.Details["perfdata_note"]; note != "more than 64 labels: the 6 after the first 64 were left out" {
			t.Errorf("perfdata_note %q", note)
		}
	})
}

const pluginDir = "/usr/lib/nagios/plugins"

// plugin returns the path of one of Debian's monitoring-plugins-basic, and
// skips the test when it is not installed.
func plugin(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(pluginDir, name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("Nagios plugin tests need %s: apt-get install -y monitoring-plugins-basic (%v)", path, err)
	}
	return path
}

// pluginCases are the verdicts real plugins give, run through exec and ssh.
// web is an HTTP server on loopback; its address is also a TCP port.
func pluginCases(t *testing.T, web inventory.Host) []struct {
	name, args string
	status     Status
	message    string   // the text after "<check> NAME: "
	perf       []string // details the result must hold, with a numeric value
} {
	port := strconv.Itoa(web.Port)
	_, closed, _ := strings.Cut(closedPort(t), ":")
	return []struct {
		name, args string
		status     Status
		message    string
		perf       []string
	}{
		{"dummy", "0 all\\ is\\ well", StatusOK, "OK: all is well", nil},
		{"dummy", "1 disk\\ at\\ 85%", StatusWarn, "WARNING: disk at 85%", nil},
		{"dummy", "2 disk\\ at\\ 97%", StatusFail, "CRITICAL: disk at 97%", nil},
		{"dummy", "3 cannot\\ tell", StatusError, "UNKNOWN: cannot tell", nil},
		{"dummy", "4", StatusError, "UNKNOWN: Status 4 is not a supported error state", nil}, // the plugin itself exits 3
		{"tcp", "-H 127.0.0.1 -p " + port, StatusOK, "TCP OK - ", []string{"perf.time"}},
		{"http", "-H 127.0.0.1 -p " + port + " -u /health", StatusOK, "HTTP OK: ", []string{"perf.time", "perf.size"}},
		{"http", "-H 127.0.0.1 -p " + port + " -u /missing", StatusWarn, "HTTP WARNING: HTTP/1.1 404 Not Found", []string{"perf.time"}},
		{"tcp", "-H 127.0.0.1 -p " + closed, StatusFail, "connect to address 127.0.0.1 and port " + closed + ": Connection refused", nil},
		{"disk", "-w 0% -c 0% -p /", StatusOK, "DISK OK", []string{"perf./"}},
	}
}

// pluginWeb serves /health (200) and nothing else (404) on loopback.
func pluginWeb(t *testing.T) inventory.Host {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("up\n")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return hostAt(t, strings.TrimPrefix(srv.URL, "http://"))
}

// checkPluginResult checks a plugin run's verdict, message and perfdata.
func checkPluginResult(t *testing.T, res Result, status Status, prefix string, perf []string) {
	t.Helper()
	expect(t, res, status, prefix)
	for _, k := range perf {
		if _, err := strconv.ParseFloat(res.Details[k], 64); err != nil {
			t.Errorf("Details[%q] = %q, want a number; details %q", k, res.Details[k], res.Details)
		}
	}
	if note := res.Details["perfdata_note"]; note != "" {
		t.Errorf("a real plugin's perfdata did not parse: %s", note)
	}
}

func TestNagiosPluginsThroughExec(t *testing.T) {
	skipUnlessLinux(t)
	allow := map[string][]string{
		"dummy": {plugin(t, "check_dummy")},
		"tcp":   {plugin(t, "check_tcp")},
		"http":  {plugin(t, "check_http")},
		"disk":  {plugin(t, "check_disk")},
	}
	web := pluginWeb(t)
	for _, tt := range pluginCases(t, web) {
		t.Run(tt.name+" "+tt.args, func(t *testing.T) {
			// exec passes each word as one argument and no shell reads
			// them, so the backslashes ssh's shell needs are undone here.
			args := strings.ReplaceAll(tt.args, `\ `, "{{\" \"}}")
			c := mustNewWith(t, "exec", map[string]string{"name": tt.name, "args": args}, Options{Exec: allow})
			res := c.Run(context.Background(), web)
			checkPluginResult(t, res, tt.status, "exec "+tt.name+": "+tt.message, tt.perf)
		})
	}
}

func TestNagiosPluginsThroughSSH(t *testing.T) {
	allow := map[string]string{}
	for name, path := range map[string]string{"dummy": "check_dummy", "tcp": "check_tcp", "http": "check_http", "disk": "check_disk"} {
		allow[name] = plugin(t, path)
	}
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	web := pluginWeb(t)
	who := currentUser(t) + "@" + s.addr
	for _, tt := range pluginCases(t, web) {
		t.Run(tt.name+" "+tt.args, func(t *testing.T) {
			// The allowlist's command line is the remote shell's, so the
			// arguments go in it (job args would be quoted as one word each).
			opts := s.with(map[string]string{tt.name: allow[tt.name] + " " + tt.args})
			res := mustNewWith(t, "ssh", map[string]string{"name": tt.name}, opts).Run(context.Background(), s.host)
			checkPluginResult(t, res, tt.status, "ssh "+who+" "+tt.name+": "+tt.message, tt.perf)
		})
	}
}
