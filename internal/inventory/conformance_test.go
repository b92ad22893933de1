package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The conformance test reads each inventory under testdata/ansible with
// Patrol and with Ansible itself, and compares what they make of it: the
// hosts, in order; each host's address, port, groups and variables; and
// the hosts each pattern selects, in order.
//
// Ansible is slow to start, so each case runs it twice (three times with a
// limit file): ansible-inventory --list for the variables, and one
// ansible-playbook run whose plays each target one pattern and print the
// hosts Ansible selected (ansible_play_hosts_all, in order) and, for
// "all", every host's group_names. ansible-core alone is enough; no
// collection is used, and nothing touches the network.

type conformanceCase struct {
	dir      string   // under testdata/ansible
	source   string   // the inventory, relative to dir
	patterns []string // host patterns to compare; "all" is always compared
	plain    bool     // a Patrol plain list: Ansible names a host by its address
	script   bool     // --list JSON, which Ansible reads only from a script
	limits   []string // --limit @file contents to compare, one pattern per line
}

var conformanceCases = []conformanceCase{
	{dir: "ini_basic", source: "hosts.ini", patterns: []string{
		"*", "web", "web:db", "web,db", "prod:&extra", "prod:!web", "web*", "*.example.com",
		"~db-[ace]", "web[0]", "web[-1]", "web[1:3]", "prod[2:]", "prod[1:0]", "ungrouped", "alias1",
		"db0:late1", "all:!prod", "w-?-?", "web:!web-[a:b]", "10.0.0.3", "2001:db8::6",
		"web01.example.com,bravo", "extra:prio_*", "nosuch", "prod:&nosuch", "~.*\\.example",
		"!web", "&web", "web:&db",
	}, limits: []string{"web[0]\nlate1\n\n!web01.example.com\nbravo"}},
	{dir: "yaml_basic", source: "hosts.yml", patterns: []string{
		"web", "prod", "prod[0:1]", "web:!web-special", "*", "ungrouped", "direct1", "merged:single",
		"~m[12]", "2001:db8::7", "web9", "pp1", "prio_*", "all[-1]",
	}},
	{dir: "json_list", source: "inventory.json", script: true, patterns: []string{
		"app", "app[1:]", "cache,ungrouped", "app:!j1", "oddhost", "app_eu", "*",
	}},
	{dir: "json_yamlshape", source: "hosts.json", patterns: []string{"api", "edge", "edge[0]", "api-x"}},
	{dir: "vars_files", source: "hosts", patterns: []string{"app", "app:&db", "app[-1]"}},
	{dir: "inventory_dir", source: "inv", patterns: []string{"prod", "web", "cache", "ignored", "should_not_appear"}},
	{dir: "sectionless", source: "hosts", patterns: []string{"ungrouped", "web*", "alias"}},
	{dir: "plain", source: "hosts.txt", plain: true},
}

func TestAnsibleConformance(t *testing.T) {
	for _, tool := range []string{"ansible-inventory", "ansible-playbook"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: install Ansible (apt-get install -y --no-install-recommends ansible-core) "+
				"to compare Patrol's inventory reading with Ansible's", tool)
		}
	}
	for _, tc := range conformanceCases {
		t.Run(tc.dir, func(t *testing.T) {
			t.Parallel()
			checkConformance(t, tc)
		})
	}
}

func checkConformance(t *testing.T, tc conformanceCase) {
	// Work on a copy: Ansible may write beside what it reads.
	tmp := t.TempDir()
	caseDir := filepath.Join(tmp, "case")
	if err := os.CopyFS(caseDir, os.DirFS(filepath.Join("testdata", "ansible", tc.dir))); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(caseDir, tc.source)
	ansibleSrc := src
	if tc.script {
		ansibleSrc = filepath.Join(caseDir, "inventory.sh")
		script := "#!/bin/sh\nexec cat " + strconv.Quote(src) + "\n"
		if err := os.WriteFile(ansibleSrc, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := Load(src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	a := newAnsible(t, tmp, ansibleSrc)

	// Hosts, addresses, ports, variables.
	hostvars := a.hostvars()
	play := a.plays(append([]string{"all"}, tc.patterns...), tc.limits)
	ansibleName := func(h Host) string {
		if tc.plain {
			return h.Address
		}
		return h.Name
	}
	var got []string
	for _, h := range inv.Hosts() {
		got = append(got, ansibleName(h))
	}
	if want := play.hosts[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("hosts, in order:\n got %q\nwant %q (Ansible)", got, want)
	}
	for _, h := range inv.Hosts() {
		name := ansibleName(h)
		vars := hostvars[name]
		delete(vars, "inventory_file")
		delete(vars, "inventory_dir")
		wantAddr, wantPort := name, 0
		if v, ok := vars["ansible_host"]; ok {
			wantAddr = pyStr(v)
		}
		if v, ok := vars["ansible_port"]; ok {
			wantPort, _ = strconv.Atoi(pyStr(v))
		}
		if h.Address != wantAddr || h.Port != wantPort {
			t.Errorf("host %s: address %s port %d, Ansible %s port %d", h.Name, h.Address, h.Port, wantAddr, wantPort)
		}
		if tc.plain {
			// A plain list's port is part of its name for Patrol, a host
			// variable for Ansible.
			delete(vars, "ansible_port")
		}
		if len(h.Vars) != len(vars) {
			t.Errorf("host %s: vars %v, Ansible %v", h.Name, h.Vars, vars)
		}
		for k, v := range vars {
			g, ok := h.Vars[k]
			if !ok {
				t.Errorf("host %s: no var %s, Ansible has %s", h.Name, k, v)
			} else if !sameValue(g, v) {
				t.Errorf("host %s: var %s = %q, Ansible %s", h.Name, k, g, v)
			}
		}
		var wantGroups []string
		for _, g := range play.groupNames[name] {
			if g != "ungrouped" {
				wantGroups = append(wantGroups, g)
			}
		}
		if !reflect.DeepEqual(h.Groups, wantGroups) {
			t.Errorf("host %s: groups %q, Ansible %q", h.Name, h.Groups, wantGroups)
		}
	}

	// Patterns.
	for i, p := range tc.patterns {
		want := play.hosts[i+1]
		sel, err := inv.Select(p)
		if len(want) == 0 {
			if err == nil {
				t.Errorf("Select(%q) = %v, Ansible selects no host", p, names(sel))
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%q): %v; Ansible selects %q", p, err, want)
			continue
		}
		if got := names(sel); !reflect.DeepEqual(got, want) {
			t.Errorf("Select(%q):\n got %q\nwant %q (Ansible)", p, got, want)
		}
	}
	for i, limit := range tc.limits {
		file := filepath.Join(tmp, fmt.Sprintf("limit%d", i))
		if err := os.WriteFile(file, []byte(limit), 0o600); err != nil {
			t.Fatal(err)
		}
		sel, err := inv.Select("@" + file)
		if err != nil {
			t.Errorf("Select(@file): %v", err)
			continue
		}
		// With --limit, Ansible lists the hosts in the order of "all".
		got := names(sel)
		sort.Strings(got)
		want := append([]string(nil), play.limited[i]...)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Select(@file %q):\n got %q\nwant %q (Ansible --limit)", limit, got, want)
		}
	}
}

func names(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Name)
	}
	return out
}

// ansible runs Ansible's tools on one inventory, without network, without
// any ansible.cfg, from a directory of their own.
type ansible struct {
	t   *testing.T
	dir string // a scratch directory: HOME, cwd, the playbook
	src string
}

func newAnsible(t *testing.T, tmp, src string) *ansible {
	dir := filepath.Join(tmp, "ansible")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ansible.cfg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return &ansible{t: t, dir: dir, src: src}
}

func (a *ansible) run(args ...string) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = a.dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + a.dir,
		"LANG=C.UTF-8",
		"ANSIBLE_CONFIG=" + filepath.Join(a.dir, "ansible.cfg"),
		"ANSIBLE_LOCAL_TEMP=" + filepath.Join(a.dir, "tmp"),
		"ANSIBLE_INVENTORY_UNPARSED_FAILED=True",
		"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=True",
		"ANSIBLE_HOST_PATTERN_MISMATCH=ignore",
		"ANSIBLE_DEPRECATION_WARNINGS=False",
		"ANSIBLE_NOCOLOR=True",
		"ANSIBLE_STDOUT_CALLBACK=oneline",
		"ANSIBLE_COLLECTIONS_PATH=" + filepath.Join(a.dir, "collections"),
		"ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=False",
		"ANSIBLE_GATHERING=explicit",
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		a.t.Fatalf("%s: %v\n%s\n%s", strings.Join(args, " "), err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.Bytes()
}

// hostvars returns `ansible-inventory --list`'s _meta.hostvars: each
// host's variables merged.
func (a *ansible) hostvars() map[string]map[string]json.RawMessage {
	var list struct {
		Meta struct {
			Hostvars map[string]map[string]json.RawMessage `json:"hostvars"`
		} `json:"_meta"`
	}
	out := a.run("ansible-inventory", "-i", a.src, "--list")
	if err := json.Unmarshal(out, &list); err != nil {
		a.t.Fatalf("ansible-inventory --list: %v\n%s", err, out)
	}
	if list.Meta.Hostvars == nil {
		list.Meta.Hostvars = map[string]map[string]json.RawMessage{}
	}
	return list.Meta.Hostvars
}

type playResult struct {
	hosts      [][]string          // per pattern, the hosts Ansible selects, in order
	groupNames map[string][]string // per host, group_names
	limited    [][]string          // per limit file, the hosts of all --limit @file
}

// plays runs one playbook: a play per pattern printing the hosts it
// targets, the first (for "all") also every host's group_names; then
// `ansible all --list-hosts --limit @file` per limit. It uses only what
// ansible-core has: the debug module and the oneline callback, which
// prints each result as "HOST | SUCCESS => JSON" on one line.
func (a *ansible) plays(patterns []string, limits []string) playResult {
	var pb strings.Builder
	for i, p := range patterns {
		q, _ := json.Marshal(p)
		msg := fmt.Sprintf("{{ {'play': %d, 'hosts': ansible_play_hosts_all} }}", i)
		if i == 0 {
			msg = fmt.Sprintf("{{ {'play': %d, 'hosts': ansible_play_hosts_all, 'groups': dict(ansible_play_hosts_all | "+
				"zip(ansible_play_hosts_all | map('extract', hostvars, 'group_names')))} }}", i)
		}
		m, _ := json.Marshal(msg)
		fmt.Fprintf(&pb, "- hosts: %s\n  gather_facts: false\n  tasks:\n    - debug: {msg: %s}\n      run_once: true\n", q, m)
	}
	book := filepath.Join(a.dir, "plays.yml")
	if err := os.WriteFile(book, []byte(pb.String()), 0o644); err != nil {
		a.t.Fatal(err)
	}
	out := a.run("ansible-playbook", "-i", a.src, book)
	r := playResult{hosts: make([][]string, len(patterns)), groupNames: map[string][]string{}}
	for _, line := range strings.Split(string(out), "\n") {
		_, result, ok := strings.Cut(line, " | SUCCESS => ")
		if !ok {
			continue
		}
		var res struct {
			Msg struct {
				Play   int                 `json:"play"`
				Hosts  []string            `json:"hosts"`
				Groups map[string][]string `json:"groups"`
			} `json:"msg"`
		}
		if err := json.Unmarshal([]byte(result), &res); err != nil || res.Msg.Play < 0 || res.Msg.Play >= len(patterns) {
			a.t.Fatalf("ansible-playbook printed %q: %v", line, err)
		}
		r.hosts[res.Msg.Play] = res.Msg.Hosts
		if res.Msg.Groups != nil {
			r.groupNames = res.Msg.Groups
		}
	}
	if len(r.hosts[0]) == 0 {
		a.t.Fatalf("Ansible found no hosts in %s:\n%s", a.src, out)
	}
	for i, limit := range limits {
		file := filepath.Join(a.dir, fmt.Sprintf("limit%d", i))
		if err := os.WriteFile(file, []byte(limit), 0o644); err != nil {
			a.t.Fatal(err)
		}
		out := a.run("ansible", "-i", a.src, "all", "--list-hosts", "--limit", "@"+file)
		var hosts []string
		for _, line := range strings.Split(string(out), "\n")[1:] {
			if line = strings.TrimSpace(line); line != "" {
				hosts = append(hosts, line)
			}
		}
		r.limited = append(r.limited, hosts)
	}
	return r
}

// pyStr renders an Ansible JSON value as Patrol documents Host.Vars:
// Python's str() for scalars (True, 1.5), "" for null, JSON for lists and
// mappings.
func pyStr(raw json.RawMessage) string {
	v, ok := decodeAnsible(raw)
	if !ok {
		return "<invalid JSON>"
	}
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case bool:
		if v {
			return "True"
		}
		return "False"
	case json.Number:
		return v.String() // Python's json writes floats as repr() does
	}
	return string(raw)
}

// decodeAnsible decodes ansible-inventory's JSON, numbers as written, and
// unwraps the strings it marks unsafe ({"__ansible_unsafe": "..."}).
func decodeAnsible(b []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, false
	}
	var unwrap func(any) any
	unwrap = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["__ansible_unsafe"]; ok && len(v) == 1 {
				return s
			}
			for k, e := range v {
				v[k] = unwrap(e)
			}
		case []any:
			for i, e := range v {
				v[i] = unwrap(e)
			}
		}
		return v
	}
	return unwrap(v), true
}

// sameValue compares Patrol's text for a variable with Ansible's JSON
// value: scalars as text, lists and mappings as JSON values.
func sameValue(got string, want json.RawMessage) bool {
	w, ok := decodeAnsible(want)
	if !ok {
		return false
	}
	switch w.(type) {
	case []any, map[string]any:
		g, ok := decodeAnsible([]byte(got))
		return ok && reflect.DeepEqual(g, w)
	}
	return got == pyStr(want)
}
