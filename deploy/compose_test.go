package deploy_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestComposeConfig: docker-compose accepts docker-compose.yml.
func TestComposeConfig(t *testing.T) {
	t.Parallel()
	dc := tool(t, "docker-compose", installDockerCompose)
	run(t, repo(t), dc, "-f", "docker-compose.yml", "config", "-q")
}

// composeService is the part of a service in `docker-compose config`'s
// output these tests read. Volumes are strings ("src:dst:mode") in
// docker-compose 1.x's output and maps in Compose v2's.
type composeService struct {
	Image           string            `yaml:"image"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Volumes         []any             `yaml:"volumes"`
	Profiles        []string          `yaml:"profiles"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
}

// composeConfig runs `docker-compose config` once for the tests that read
// its output (docker-compose takes a good fraction of a second to start).
// Only its standard output is YAML: warnings go to standard error.
var composeConfig = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "config")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return stderr.String(), err
	}
	return string(out), nil
})

// composeServices returns docker-compose.yml as docker-compose resolves it.
func composeServices(t *testing.T) map[string]composeService {
	t.Helper()
	tool(t, "docker-compose", installDockerCompose)
	out, err := composeConfig()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("docker-compose config output: %v\n%s", err, out)
	}
	return cfg.Services
}

// mounts returns a service's bind mounts, target → source.
func (s composeService) mounts() map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.HasPrefix(parts[0], "/") {
				m[parts[1]] = parts[0]
			}
		case map[string]any:
			if v["type"] == "bind" {
				m[v["target"].(string)], _ = v["source"].(string)
			}
		}
	}
	return m
}

// TestComposeMounts: every bind mount's source exists, Prometheus gets
// deploy/prometheus and Grafana its provisioning and the dashboards where
// the provider looks for them.
func TestComposeMounts(t *testing.T) {
	t.Parallel()
	services := composeServices(t)
	for name, s := range services {
		for target, source := range s.mounts() {
			if _, err := os.Stat(source); err != nil {
				t.Errorf("service %s mounts %s at %s: %v", name, source, target, err)
			}
		}
	}
	want := map[string]map[string]string{
		"prometheus": {"/etc/prometheus": repo(t, "deploy", "prometheus")},
		"grafana": {
			"/etc/grafana/provisioning": repo(t, "deploy", "grafana", "provisioning"),
			grafanaDashboardPath(t):     repo(t, "deploy", "grafana", "dashboards"),
		},
	}
	for name, mounts := range want {
		got := services[name].mounts()
		for target, source := range mounts {
			if got[target] != source {
				t.Errorf("service %s: %s is mounted from %q, want %s", name, target, got[target], source)
			}
		}
	}
	if _, ok := services["prometheus"]; !ok {
		t.Error("no prometheus service")
	}
}

// scrapeConfig is the part of prometheus.yml these tests read.
type scrapeConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// TestComposeScraped: Prometheus scrapes every Patrol service of the
// compose file on the port the service listens on, and every host it
// scrapes is a service (or the Docker host, for `patrol dev`).
func TestComposeScraped(t *testing.T) {
	t.Parallel()
	services := composeServices(t)
	var cfg scrapeConfig
	if err := yaml.Unmarshal(readFile(t, repo(t, "deploy", "prometheus", "prometheus.yml")), &cfg); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	check := func(job, host, port string) {
		if host == "host.docker.internal" {
			return
		}
		s, ok := services[host]
		if !ok {
			t.Errorf("job %s scrapes %s:%s, but docker-compose.yml has no service %s", job, host, port, host)
			return
		}
		scraped[host] = true
		if addr, ok := s.Environment["PATROL_METRICS_ADDR"]; ok {
			if _, p, _ := net.SplitHostPort(addr); p != port {
				t.Errorf("job %s scrapes %s on port %s, but its PATROL_METRICS_ADDR is %q", job, host, port, addr)
			}
		}
	}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("job %s: target %q: %v", sc.JobName, target, err)
					continue
				}
				check(sc.JobName, host, port)
			}
		}
		for _, dns := range sc.DNSSDConfigs {
			for _, name := range dns.Names {
				check(sc.JobName, name, strconv.Itoa(dns.Port))
			}
		}
	}
	for name, s := range services {
		if s.Image == "patrol:dev" && len(s.Profiles) == 0 && !scraped[name] {
			t.Errorf("service %s runs Patrol but prometheus.yml does not scrape it", name)
		}
	}
}

// TestComposePatrolServices: Patrol's services reach the etcd members of
// the file, listen for Prometheus on every interface, and workers get more
// time to stop than their drain takes.
func TestComposePatrolServices(t *testing.T) {
	t.Parallel()
	services := composeServices(t)
	schedulers, zones := 0, map[string]bool{}
	for name, s := range services {
		if s.Image != "patrol:dev" {
			continue
		}
		for _, ep := range strings.Split(s.Environment["PATROL_ENDPOINTS"], ",") {
			host, _, err := net.SplitHostPort(ep)
			if _, ok := services[host]; err != nil || !ok {
				t.Errorf("service %s: PATROL_ENDPOINTS names %q, which is not a service of docker-compose.yml", name, ep)
			}
		}
		if len(s.Profiles) > 0 {
			continue // the CLI
		}
		if addr := s.Environment["PATROL_METRICS_ADDR"]; !strings.HasPrefix(addr, ":") {
			t.Errorf("service %s: PATROL_METRICS_ADDR %q listens on loopback only: Prometheus cannot reach it", name, addr)
		}
		if len(s.Command) == 0 {
			t.Errorf("service %s has no command", name)
			continue
		}
		switch s.Command[0] {
		case "scheduler":
			schedulers++
		case "worker":
			zones[flagValue(s.Command, "--zone", "default")] = true
			grace, err := time.ParseDuration(s.StopGracePeriod)
			drain, derr := time.ParseDuration(flagValue(s.Command, "--drain-timeout", "30s"))
			if err != nil || derr != nil || grace <= drain {
				t.Errorf("service %s: stop_grace_period %q must exceed the worker's drain timeout %s", name, s.StopGracePeriod, drain)
			}
		}
	}
	if schedulers < 2 || len(zones) < 2 {
		t.Errorf("docker-compose.yml runs %d schedulers and workers in zones %v; want 2 schedulers and 2 zones", schedulers, sortedKeys(zones))
	}
	etcd := 0
	for _, s := range services {
		if s.Environment["ETCD_INITIAL_CLUSTER"] != "" {
			etcd++
		}
	}
	if etcd != 3 {
		t.Errorf("docker-compose.yml has %d etcd members, want 3", etcd)
	}
}

// flagValue returns the value of flag in args ("--flag v" or "--flag=v").
func flagValue(args []string, flag, def string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return def
}
