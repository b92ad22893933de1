package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const unitBinary = "/usr/local/bin/patrol"

var unitFiles = []string{"patrol-scheduler.service", "patrol-worker.service", "patrol-worker@.service", "patrol-web.service"}

// unit is a parsed unit file: section → its key=value lines, in order
// (keys repeat: EnvironmentFile=, SystemCallFilter=).
type unit map[string][][2]string

func parseUnit(t *testing.T, name string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for _, line := range strings.Split(string(readFile(t, repo(t, "deploy", "systemd", name))), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is no key=value line", name, line)
			}
			u[section] = append(u[section], [2]string{k, v})
		}
	}
	return u
}

// values returns every value key has in section.
func (u unit) values(section, key string) []string {
	var vs []string
	for _, kv := range u[section] {
		if kv[0] == key {
			vs = append(vs, kv[1])
		}
	}
	return vs
}

func (u unit) value(section, key string) string {
	vs := u.values(section, key)
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// TestSystemdUnitsVerify: systemd itself accepts the units, without a
// warning (systemd-analyze verify ignores an unknown or misspelt setting
// with a warning and exit status 0: any output fails here), and rates
// their exposure OK (2.0 or less on its 10-point scale).
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	analyze := tool(t, "systemd-analyze", installSystemd)
	// verify requires ExecStart's program to exist: point the copies at
	// this test's own binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, name := range unitFiles {
		text := string(readFile(t, repo(t, "deploy", "systemd", name)))
		if !strings.Contains(text, "ExecStart="+unitBinary+" ") {
			t.Fatalf("%s: ExecStart does not run %s", name, unitBinary)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, unitBinary, self)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	out, err := runErr(dir, analyze, append([]string{"verify", "--man=no", "--generators=no"}, paths...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, path := range paths {
		if out, err := runErr(dir, analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", path); err != nil {
			t.Errorf("systemd-analyze security %s: exposure above 2.0 (%v): a hardening setting was dropped?\n%s", filepath.Base(path), err, out)
		}
	}
}

// TestSystemdUnits: the settings the roles depend on. Type=notify (Patrol
// sends READY=1 and STOPPING=1), restart on failure, the shared and the
// per-unit environment files, the hardening list, and for workers a stop
// timeout beyond the drain with SIGTERM to the worker alone.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	hardening := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
		"Type": "notify", "Restart": "on-failure", "User": "patrol", "KillMode": "mixed",
	}
	for _, name := range unitFiles {
		u := parseUnit(t, name)
		for k, want := range hardening {
			if vs := u.values("Service", k); len(vs) != 1 || vs[0] != want {
				t.Errorf("%s: %s=%v, want %s=%s", name, k, vs, k, want)
			}
		}
		if !slices.Contains(u.values("Service", "SystemCallFilter"), "@system-service") {
			t.Errorf("%s: no SystemCallFilter=@system-service", name)
		}
		if fams := strings.Fields(u.value("Service", "RestrictAddressFamilies")); !slices.Contains(fams, "AF_INET") || !slices.Contains(fams, "AF_INET6") || !slices.Contains(fams, "AF_UNIX") {
			t.Errorf("%s: RestrictAddressFamilies=%v, want at least AF_INET AF_INET6 AF_UNIX", name, fams)
		}
		if got := u.values("Service", "EnvironmentFile"); !slices.Equal(got, []string{"/etc/patrol/patrol.env", "-/etc/patrol/%N.env"}) {
			t.Errorf("%s: EnvironmentFile=%v, want patrol.env then the unit's own, optional", name, got)
		}
		if u.value("Install", "WantedBy") != "multi-user.target" {
			t.Errorf("%s: not WantedBy=multi-user.target", name)
		}
		if !strings.HasPrefix(name, "patrol-worker") {
			continue
		}
		stop, err := time.ParseDuration(u.value("Service", "TimeoutStopSec"))
		drain, derr := time.ParseDuration(flagValue(strings.Fields(u.value("Service", "ExecStart")), "--drain-timeout", "30s"))
		if err != nil || derr != nil || stop <= drain {
			t.Errorf("%s: TimeoutStopSec=%s must exceed the drain timeout %s", name, u.value("Service", "TimeoutStopSec"), drain)
		}
	}
	// The template differs from the plain worker unit only in what names
	// the zone: the hardening cannot drift between them.
	plain, tmpl := parseUnit(t, "patrol-worker.service"), parseUnit(t, "patrol-worker@.service")
	strip := func(u unit) [][2]string {
		return slices.DeleteFunc(slices.Clone(u["Service"]), func(kv [2]string) bool { return kv[0] == "ExecStart" })
	}
	if !slices.Equal(strip(plain), strip(tmpl)) {
		t.Errorf("patrol-worker.service and patrol-worker@.service differ beyond ExecStart:\n%v\n%v", strip(plain), strip(tmpl))
	}
	if got := tmpl.value("Service", "ExecStart"); !strings.Contains(got, "--zone %i") {
		t.Errorf("patrol-worker@.service: ExecStart=%s does not take its zone from the instance (--zone %%i)", got)
	}
}

// TestSystemdEnvironmentFiles: the example environment files are KEY=value
// lines systemd reads as meant (no spaces around =, no quotes, no export),
// naming Patrol's variables.
func TestSystemdEnvironmentFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(repo(t, "deploy", "systemd", "*.env"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.env in deploy/systemd (%v)", err)
	}
	keys := map[string]bool{}
	for _, path := range files {
		for i, line := range strings.Split(string(readFile(t, path)), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			switch {
			case !ok || strings.ContainsAny(k, " \t") || strings.HasPrefix(v, " "):
				t.Errorf("%s:%d: %q is not KEY=value", filepath.Base(path), i+1, line)
			case !strings.HasPrefix(k, "PATROL_"):
				t.Errorf("%s:%d: %s is not one of Patrol's variables", filepath.Base(path), i+1, k)
			case strings.ContainsAny(v, `"'$`):
				t.Errorf("%s:%d: %q: keep values plain (no quotes or $)", filepath.Base(path), i+1, line)
			}
			keys[k] = true
		}
	}
	for _, k := range []string{"PATROL_ENDPOINTS", "PATROL_CACERT", "PATROL_CERT", "PATROL_KEY", "PATROL_METRICS_ADDR"} {
		if !keys[k] {
			t.Errorf("no example environment file sets %s", k)
		}
	}
}

// TestSystemdSysusers: systemd-sysusers accepts the patrol user's file.
func TestSystemdSysusers(t *testing.T) {
	t.Parallel()
	sysusers := tool(t, "systemd-sysusers", installSystemd)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := run(t, root, sysusers, "--dry-run", "--root", root, repo(t, "deploy", "systemd", "patrol.sysusers"))
	if !strings.Contains(out, "patrol") {
		t.Errorf("systemd-sysusers created no patrol user:\n%s", out)
	}
}

// TestSystemdICMP: what the icmp check needs is shipped and correct. The
// sysctl file allows unprivileged ICMP sockets for every group; the raw
// socket drop-in grants CAP_NET_RAW and nothing else, and systemd accepts
// the worker unit with it.
func TestSystemdICMP(t *testing.T) {
	t.Parallel()
	var sysctl []string
	for _, line := range strings.Split(string(readFile(t, repo(t, "deploy", "systemd", "60-patrol-ping.conf"))), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			sysctl = append(sysctl, strings.Join(strings.Fields(line), " "))
		}
	}
	if !slices.Equal(sysctl, []string{"net.ipv4.ping_group_range = 0 2147483647"}) {
		t.Errorf("60-patrol-ping.conf sets %q, want only net.ipv4.ping_group_range = 0 2147483647", sysctl)
	}
	dropIn := parseUnit(t, "icmp-raw.conf")
	if got := dropIn["Service"]; !slices.Equal(got, [][2]string{{"CapabilityBoundingSet", "CAP_NET_RAW"}, {"AmbientCapabilities", "CAP_NET_RAW"}}) || len(dropIn) != 1 {
		t.Errorf("icmp-raw.conf: %v, want [Service] CapabilityBoundingSet=CAP_NET_RAW and AmbientCapabilities=CAP_NET_RAW only", dropIn)
	}
	if !strings.Contains(string(readFile(t, repo(t, "deploy", "systemd", "patrol-worker.service"))), "icmp-raw.conf") {
		t.Error("patrol-worker.service does not point to icmp-raw.conf")
	}

	analyze := tool(t, "systemd-analyze", installSystemd)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unitPath := filepath.Join(dir, "patrol-worker.service")
	text := strings.ReplaceAll(string(readFile(t, repo(t, "deploy", "systemd", "patrol-worker.service"))), unitBinary, self)
	if err := os.WriteFile(unitPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(unitPath+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unitPath+".d", "icmp-raw.conf"), readFile(t, repo(t, "deploy", "systemd", "icmp-raw.conf")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runErr(dir, analyze, "verify", "--man=no", "--generators=no", unitPath)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify with icmp-raw.conf: %v\n%s", err, out)
	}
	// systemd counts the capability against the unit, which stays rated OK.
	out, err = runErr(dir, analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", unitPath)
	if err != nil || !regexp.MustCompile(`✗ CapabilityBoundingSet=~CAP_NET_\(\S*RAW`).MatchString(out) {
		t.Errorf("systemd-analyze security: the drop-in's CAP_NET_RAW not seen, or exposure above 2.0 (%v):\n%s", err, out)
	}
}
