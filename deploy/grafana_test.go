package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const dashboardPath = "deploy/grafana/dashboards/patrol.json"

// panel is the part of a Grafana panel these tests read.
type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, repo(t, dashboardPath)), &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

type panelExpr struct{ panel, expr string }

func dashboardExprs(t *testing.T) []panelExpr {
	t.Helper()
	var out []panelExpr
	for _, p := range allPanels(loadDashboard(t).Panels) {
		for _, tg := range p.Targets {
			out = append(out, panelExpr{p.Title, tg.Expr})
		}
	}
	return out
}

// TestDashboardLayout: panel IDs are unique, panels sit inside the 24-column
// grid without overlapping, and every query goes to the data source the
// dashboard's variable picks.
func TestDashboardLayout(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title (uid %q, title %q)", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("dashboard has no datasource variable (variables: %v)", vars)
	}
	ids := map[int]string{}
	var placed []panel
	for _, p := range allPanels(d.Panels) {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v is outside the 24-column grid", p.Title, g)
		}
		for _, q := range placed {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q %+v and %q %+v overlap", q.Title, h, p.Title, g)
			}
		}
		placed = append(placed, p)
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource is %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.RefID == "" || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: a target without refId or expr: %+v", p.Title, tg)
			}
		}
	}
}

// TestDashboardMetrics: the dashboard names only documented metrics, and
// shows every documented one.
func TestDashboardMetrics(t *testing.T) {
	t.Parallel()
	doc := metricsDoc(t)
	text := string(readFile(t, repo(t, dashboardPath)))
	if bad := undocumented(doc, text); len(bad) > 0 {
		t.Errorf("%s names metrics docs/metrics.md does not list: %v", dashboardPath, bad)
	}
	var queries strings.Builder
	for _, e := range dashboardExprs(t) {
		queries.WriteString(e.expr + "\n")
	}
	shown := map[string]bool{}
	for _, name := range metricName.FindAllString(queries.String(), -1) {
		shown[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			shown[strings.TrimSuffix(name, suffix)] = true
		}
	}
	for _, name := range sortedKeys(doc) {
		if !shown[name] {
			t.Errorf("%s (docs/metrics.md) is on no panel of %s: add it to a panel", name, dashboardPath)
		}
	}
}

// grafanaVar matches Grafana's variables in a query: $__rate_interval,
// $__range, $cluster, ${cluster}, [[cluster]].
var grafanaVar = regexp.MustCompile(`\$__[a-z_]+|\$\{[a-zA-Z0-9_:]+\}|\$[a-zA-Z0-9_]+|\[\[[a-zA-Z0-9_]+\]\]`)

// TestDashboardQueriesParse: every panel query is valid PromQL. promtool
// parses them as recording rules, with Grafana's variables filled in.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", installPromtool)
	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []recording
	for i, e := range dashboardExprs(t) {
		expr := grafanaVar.ReplaceAllStringFunc(e.expr, func(v string) string {
			if strings.HasPrefix(v, "$__") {
				return "5m" // intervals and ranges
			}
			return ".*" // $cluster: a regex matcher's value
		})
		rules = append(rules, recording{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runErr(".", promtool, "check", "rules", path)
	if err != nil {
		t.Fatalf("a dashboard query does not parse (dashboard:query_N is the Nth query):\n%s\n%s", out, b)
	}
}

// TestGrafanaProvisioning: the data source points at compose's Prometheus,
// and the dashboard provider reads the directory compose mounts the
// dashboards at (checked against docker-compose.yml in TestComposeMounts).
func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	ds := grafanaDatasources(t)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasource provisioning: %+v, want one prometheus at http://prometheus:9090", ds.Datasources)
	}
	if p := grafanaDashboardPath(t); p == "" {
		t.Error("dashboard provisioning: no file provider with options.path")
	}
}

type datasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string         `yaml:"name"`
		UID       string         `yaml:"uid"`
		Type      string         `yaml:"type"`
		Access    string         `yaml:"access"`
		URL       string         `yaml:"url"`
		IsDefault bool           `yaml:"isDefault"`
		Editable  bool           `yaml:"editable"`
		JSONData  map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

func grafanaDatasources(t *testing.T) datasources {
	t.Helper()
	var ds datasources
	decodeYAMLStrict(t, "deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
	return ds
}

// grafanaDashboardPath is where the provisioned provider reads dashboards.
func grafanaDashboardPath(t *testing.T) string {
	t.Helper()
	var p struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			Folder                string `yaml:"folder"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeYAMLStrict(t, "deploy/grafana/provisioning/dashboards/patrol.yml", &p)
	if len(p.Providers) != 1 || p.Providers[0].Type != "file" {
		t.Fatalf("dashboard provisioning: %+v, want one file provider", p.Providers)
	}
	return p.Providers[0].Options.Path
}

// decodeYAMLStrict decodes a repository file, refusing unknown fields.
func decodeYAMLStrict(t *testing.T, rel string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(string(readFile(t, repo(t, rel)))))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}
