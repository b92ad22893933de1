// Package deploy_test checks what deploy/ ships against the tools that read
// it (promtool, docker-compose, systemd-analyze), against each other (the
// scrape targets and the compose services, the runbook and the alerts), and
// against docs/metrics.md (every metric a rule or panel names exists).
package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// repo is the repository's root; tests run in deploy/.
func repo(t *testing.T, elem ...string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// readFile returns the file's contents or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tool returns the path of an external program a test needs. When it is
// missing the test fails under CI (CI must not pass on what it did not run)
// and is skipped elsewhere, saying how to install it either way.
func tool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found: " + install
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

const (
	installPromtool      = "apt-get install --no-install-recommends prometheus (Debian's package has promtool)"
	installDockerCompose = "apt-get install --no-install-recommends docker-compose (only validates: no Docker engine needed)"
	installSystemd       = "apt-get install --no-install-recommends systemd (for systemd-analyze and systemd-sysusers)"
)

// run runs a program in dir and returns its combined output; a non-zero
// exit fails the test with that output.
func run(t *testing.T, dir, prog string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, prog, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir, prog string, args ...string) (string, error) {
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// metricName finds Patrol's metric names in text: patrol_ and at least one
// more word. A name ending in _ (as in "patrol_queue_*") is a family, not a
// name, and is not matched.
var metricName = regexp.MustCompile(`\bpatrol_[a-z0-9_]*[a-z0-9]\b`)

// metricsDoc returns docs/metrics.md's metric names (the backticked names
// in its tables) and their types.
func metricsDoc(t *testing.T) map[string]string {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\|\\s*`(patrol_[a-z0-9_]+)`\\s*\\|\\s*([a-z]+)\\s*\\|")
	doc := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readFile(t, repo(t, "docs", "metrics.md"))), -1) {
		doc[m[1]] = m[2]
	}
	if len(doc) < 10 {
		t.Fatalf("docs/metrics.md: found only %d metrics in its tables (%v): has the table format changed?", len(doc), doc)
	}
	return doc
}

// documented reports whether name is a documented metric, or a series of a
// documented histogram (_bucket, _sum, _count).
func documented(doc map[string]string, name string) bool {
	if _, ok := doc[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && doc[base] == "histogram" {
			return true
		}
	}
	return false
}

// undocumented returns the Patrol metric names in text that docs/metrics.md
// does not list.
func undocumented(doc map[string]string, text string) []string {
	seen := map[string]bool{}
	for _, name := range metricName.FindAllString(text, -1) {
		if !documented(doc, name) {
			seen[name] = true
		}
	}
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
