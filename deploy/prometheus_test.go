package deploy_test

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// runbookURL is where every alert's runbook_url points, before the anchor.
const runbookURL = "https://github.com/patrol-dev/patrol/blob/main/docs/runbook.md"

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, repo(t, "deploy", "prometheus", "alerts.yml"))))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("alerts.yml has no rules")
	}
	return rules
}

// TestPrometheusConfig: promtool accepts the scrape configuration and the
// rule files it names (resolved next to it, as in the container).
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", installPromtool)
	out := run(t, repo(t, "deploy", "prometheus"), promtool, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "alerts.yml") {
		t.Errorf("promtool check config did not load alerts.yml:\n%s", out)
	}
}

// TestAlertRules: promtool accepts the rules, and their unit tests pass.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", installPromtool)
	dir := repo(t, "deploy", "prometheus")
	run(t, dir, promtool, "check", "rules", "alerts.yml")
	out := run(t, dir, promtool, "test", "rules", "alerts_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}

// TestAlertsAreComplete: every alert carries what on-call needs (severity,
// summary, description, a runbook_url whose anchor docs/runbook.md has),
// and has unit tests where it fires and where it does not.
func TestAlertsAreComplete(t *testing.T) {
	t.Parallel()
	anchors := runbookAnchors(t)
	tested := alertTests(t)
	names := map[string]bool{}
	for _, r := range alertRules(t) {
		if r.Alert == "" {
			continue
		}
		names[r.Alert] = true
		switch r.Labels["severity"] {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s: label severity is %q, want critical, warning or info", r.Alert, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		u := r.Annotations["runbook_url"]
		base, anchor, _ := strings.Cut(u, "#")
		switch {
		case base != runbookURL:
			t.Errorf("%s: runbook_url %q is not under %s", r.Alert, u, runbookURL)
		case !anchors[anchor]:
			t.Errorf("%s: runbook_url anchor #%s is no heading of docs/runbook.md (its anchors: %v)", r.Alert, anchor, sortedKeys(anchors))
		case anchor != githubAnchor(r.Alert):
			t.Errorf("%s: runbook_url anchor #%s is not the alert's own section #%s", r.Alert, anchor, githubAnchor(r.Alert))
		}
		if !tested[r.Alert].fires {
			t.Errorf("%s: alerts_test.yml has no case where it fires", r.Alert)
		}
		if !tested[r.Alert].quiet {
			t.Errorf("%s: alerts_test.yml has no case where it must not fire (exp_alerts: [])", r.Alert)
		}
	}
	for name := range tested {
		if !names[name] {
			t.Errorf("alerts_test.yml tests %s, which alerts.yml does not define", name)
		}
	}
	// The runbook has no section for an alert that does not exist.
	for _, h := range runbookHeadings(t) {
		if regexp.MustCompile(`^Patrol[A-Za-z]+$`).MatchString(h) && !names[h] {
			t.Errorf("docs/runbook.md has a section %q, but alerts.yml has no such alert", h)
		}
	}
}

type tested struct{ fires, quiet bool }

// alertTests reads alerts_test.yml: which alerts are tested firing, and
// which not firing.
func alertTests(t *testing.T) map[string]tested {
	t.Helper()
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, repo(t, "deploy", "prometheus", "alerts_test.yml")), &f); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	got := map[string]tested{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			s := got[a.Alertname]
			if len(a.ExpAlerts) > 0 {
				s.fires = true
			} else {
				s.quiet = true
			}
			got[a.Alertname] = s
		}
	}
	return got
}

// TestRulesUseDocumentedMetrics: every patrol_ metric the alert rules, their
// tests and the runbook name is one docs/metrics.md lists.
func TestRulesUseDocumentedMetrics(t *testing.T) {
	t.Parallel()
	doc := metricsDoc(t)
	for _, r := range alertRules(t) {
		if bad := undocumented(doc, r.Expr); len(bad) > 0 {
			t.Errorf("alert %s uses metrics docs/metrics.md does not list: %v", r.Alert, bad)
		}
	}
	for _, f := range []string{"deploy/prometheus/alerts_test.yml", "docs/runbook.md"} {
		if bad := undocumented(doc, string(readFile(t, repo(t, f)))); len(bad) > 0 {
			t.Errorf("%s names metrics docs/metrics.md does not list: %v", f, bad)
		}
	}
}

// queueSummed matches a sum taken straight over a metric every scheduler
// exports (the queue's depth and etcd's size): with two schedulers it
// doubles. Such metrics are aggregated with max first.
var queueSummed = regexp.MustCompile(`\bsum\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*(?:rate|increase|avg_over_time|max_over_time)?\(?\s*(patrol_(?:queue|etcd_db)_[a-z_]+)`)

// TestQueueMetricsAggregatedWithMax: no rule, panel or runbook query sums
// the per-scheduler copies of the queue metrics.
func TestQueueMetricsAggregatedWithMax(t *testing.T) {
	t.Parallel()
	for _, r := range alertRules(t) {
		if m := queueSummed.FindStringSubmatch(r.Expr); m != nil {
			t.Errorf("alert %s sums %s: every scheduler exports it, aggregate with max", r.Alert, m[1])
		}
	}
	for _, e := range dashboardExprs(t) {
		if m := queueSummed.FindStringSubmatch(e.expr); m != nil {
			t.Errorf("dashboard panel %q sums %s: every scheduler exports it, aggregate with max", e.panel, m[1])
		}
	}
	if m := queueSummed.FindStringSubmatch(string(readFile(t, repo(t, "docs", "runbook.md")))); m != nil {
		t.Errorf("docs/runbook.md sums %s: every scheduler exports it, aggregate with max", m[1])
	}
	// The check itself catches what it is for.
	if !queueSummed.MatchString(`sum by (zone) (patrol_queue_tasks{state="pending"})`) {
		t.Error("queueSummed misses a plain sum")
	}
}

// runbookHeadings returns docs/runbook.md's headings, outside code blocks.
func runbookHeadings(t *testing.T) []string {
	t.Helper()
	var headings []string
	fenced := false
	for _, line := range strings.Split(string(readFile(t, repo(t, "docs", "runbook.md"))), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if m := regexp.MustCompile(`^#{1,6}\s+(.+?)\s*#*\s*$`).FindStringSubmatch(line); m != nil && !fenced {
			headings = append(headings, m[1])
		}
	}
	return headings
}

// runbookAnchors returns the anchors GitHub gives docs/runbook.md's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	anchors := map[string]bool{}
	count := map[string]int{}
	for _, h := range runbookHeadings(t) {
		a := githubAnchor(h)
		if n := count[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	return anchors
}

// githubAnchor is the anchor GitHub gives a Markdown heading: lower case,
// inline code and link markup dropped, punctuation but - and _ removed,
// spaces turned into hyphens.
func githubAnchor(heading string) string {
	h := regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return url.PathEscape(b.String())
}

func TestGithubAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		"PatrolNoLeader":                  "patrolnoleader",
		"What to do: `patrol leader`":     "what-to-do-patrol-leader",
		"etcd's quota, [docs](x.md) here": "etcds-quota-docs-here",
	} {
		if got := githubAnchor(heading); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", heading, got, want)
		}
	}
}
