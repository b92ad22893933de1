package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeTree writes files (path -> content) under a new directory and
// returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name, content string
		want          Format
	}{
		{"hosts.ini", "web1\n", FormatINI},
		{"hosts.yml", "[web]\n", FormatYAML},
		{"hosts.YAML", "", FormatYAML},
		{"inv.json", "", FormatJSON},
		{"hosts", "# c\n\n{\"web\": [\"a\"]}", FormatJSON},
		{"hosts", "---\nall:\n", FormatYAML},
		{"hosts", "# c\nall:\n  hosts:\n", FormatYAML},
		{"hosts", "web: {hosts: {a: }}\n", FormatYAML},
		{"hosts", "\"my group\":\n", FormatYAML},
		{"hosts.txt", "web1\n[web]\nweb2\n", FormatINI},
		{"hosts", "web1\n[web:children]\n", FormatINI},
		{"hosts", "; comment\nweb1\n", FormatINI},
		{"hosts", "web[01:20]\n", FormatINI},
		{"hosts", "web1 x='a b'\n", FormatINI},
		{"hosts", "web1 ansible_host=10.0.0.1\n", FormatINI},
		{"hosts.txt", "web1\nweb2:8080 zone=dc1\n[::1]:22\n[2001:db8::1]\n::1\n", FormatPlain},
		{"hosts", "web1 # ansible_host=x in a comment\n", FormatPlain},
		{"hosts", "", FormatPlain},
		{"hosts", "web1 desc=a:b\n", FormatPlain},
		{"hosts", "2001:db8::\n::1\n", FormatPlain},
		{"hosts", "web1:22\n", FormatPlain},
	}
	for _, tt := range tests {
		got, err := detect(tt.name, []byte(tt.content))
		if err != nil || got != tt.want {
			t.Errorf("detect(%s, %q) = %s, %v; want %s", tt.name, tt.content, got, err, tt.want)
		}
	}
	_, err := detect("inv.py", []byte("#!/usr/bin/env python3\n"))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("detect of a script: %v, want ErrUnsupported", err)
	}
}

func TestLoadFormats(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a.ini":  "[web]\nweb1:8080\n",
		"b.yml":  "web:\n  hosts:\n    web1:\n      ansible_port: 8080\n",
		"c.json": `{"web": ["web1"], "_meta": {"hostvars": {"web1": {"ansible_port": 8080}}}}`,
		"d":      "[web]\nweb1 ansible_port=8080\n",
	})
	want := []Host{{Name: "web1", Address: "web1", Port: 8080, Groups: []string{"web"}, Vars: vs("ansible_port=8080")}}
	for _, name := range []string{"a.ini", "b.yml", "c.json", "d"} {
		got, err := ParseFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("ParseFile(%s): %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseFile(%s) = %+v, want %+v", name, got, want)
		}
	}
}

// A plain list reads as it always has: ParseFile returns what Parse does.
func TestLoadPlainUnchanged(t *testing.T) {
	const list = "web1\nweb2:8080 zone=dc1 role=web\n10.0.0.7:22\n[2001:db8::1]:443\n2001:db8::2\nweb2:8443\n"
	dir := writeTree(t, map[string]string{"hosts.txt": list})
	got, err := ParseFile(filepath.Join(dir, "hosts.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(strings.NewReader(list), "hosts.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseFile =\n%+v\nParse =\n%+v", got, want)
	}
	inv, _ := Load(filepath.Join(dir, "hosts.txt"))
	if sel, err := inv.Select("ungrouped:!web2*"); err != nil || len(sel) != 4 {
		t.Errorf(`Select("ungrouped:!web2*") = %v, %v; want 4 hosts`, names(sel), err)
	}
}

func TestLoadPlainWithVarsFiles(t *testing.T) {
	// group_vars apply to a plain list too; its "name:port" is the host's
	// own port, which group variables do not override.
	dir := writeTree(t, map[string]string{
		"hosts":                   "web1\nweb2:8080\n",
		"group_vars/all.yml":      "ansible_port: 22\nzone: dc1\n",
		"host_vars/web2:8080.yml": "role: web\n",
	})
	got, err := ParseFile(filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	checkHosts(t, got, []Host{
		{Name: "web1", Address: "web1", Port: 22, Vars: vs("ansible_port=22", "zone=dc1")},
		{Name: "web2:8080", Address: "web2", Port: 8080, Vars: vs("ansible_port=22", "zone=dc1", "role=web")},
	})
}

func TestLoadDirectory(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"inv/01-web":             "[web]\nw1\n",
		"inv/02-prod.yml":        "prod:\n  children:\n    web:\n  vars:\n    tier: prod\n",
		"inv/03-cache.json":      `{"cache": {"hosts": {"c1": {"size": 2}}}}`,
		"inv/sub/04":             "[web]\nw2\n",
		"inv/legacy.ini":         "[x]\nignored1\n",
		"inv/notes.txt":          "not an inventory\n",
		"inv/.hidden":            "[[[",
		"inv/backup~":            "[[[",
		"inv/group_vars/web.yml": "from: dir\n",
		"group_vars/web.yml":     "from: beside the directory\n",
	})
	got, err := ParseFile(filepath.Join(dir, "inv"))
	if err != nil {
		t.Fatal(err)
	}
	checkHosts(t, got, []Host{
		{Name: "c1", Address: "c1", Groups: gs("cache"), Vars: vs("size=2")},
		{Name: "w1", Address: "w1", Groups: gs("prod", "web"), Vars: vs("tier=prod", "from=dir")},
		{Name: "w2", Address: "w2", Groups: gs("prod", "web"), Vars: vs("tier=prod", "from=dir")},
	})
}

func TestLoadVarsFiles(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"hosts": "[web]\nweb1 inline=host shared=inline\nweb2\n[db]\ndb1\n[app:children]\nweb\ndb\n" +
			"[web:vars]\nlayer=web_inventory\nchild_vs_all=web_inventory\n[all:vars]\nlayer=all_inventory\n",
		"group_vars/all.yml":        "layer: all_file\nchild_vs_all: all_file\n",
		"group_vars/web/01.yml":     "layer: web_1\nonly1: a\n",
		"group_vars/web/02.yaml":    "layer: web_2\n",
		"group_vars/web/03.txt":     "layer: txt\n",
		"group_vars/web/.h.yml":     "layer: hidden\n",
		"group_vars/web/04.yml~":    "layer: backup\n",
		"group_vars/web/sub/05.yml": "deep: yes\n",
		"group_vars/web/empty.yml":  "# nothing\n",
		"group_vars/db.yml":         "layer: db_yml\n",
		"group_vars/db.json":        `{"layer": "db_json"}`,
		"group_vars/app":            "app: 1\n",
		"group_vars/nosuch.yml":     "unused: 1\n",
		"host_vars/web1.yml":        "shared: host_file\n",
		"host_vars/db1/a.yml":       "both: a\n",
		"host_vars/db1/b.yml":       "both: b\n",
	})
	got, err := ParseFile(filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	checkHosts(t, got, []Host{
		{Name: "web1", Address: "web1", Groups: gs("app", "web"), Vars: vs("layer=web_2", "child_vs_all=all_file",
			"only1=a", "deep=True", "app=1", "inline=host", "shared=host_file")},
		{Name: "web2", Address: "web2", Groups: gs("app", "web"), Vars: vs("layer=web_2", "child_vs_all=all_file",
			"only1=a", "deep=True", "app=1")},
		{Name: "db1", Address: "db1", Groups: gs("app", "db"), Vars: vs("layer=db_yml", "child_vs_all=all_file", "app=1", "both=b")},
	})
}

func TestLoadInvalid(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"script":                 "#!/bin/sh\necho {}\n",
		"only-ignored/hosts.ini": "[web]\nw1\n",
		"only-ignored/hosts.txt": "w2\n",
		"empty/.keep":            "",
		"badvars/hosts":          "[web]\nw1\n",
		"badvars/group_vars/web": "- a list\n",
		"vault/hosts":            "[web]\nw1\n",
		"vault/host_vars/w1.yml": "$ANSIBLE_VAULT;1.1;AES256\n6162\n",
		"badyaml/hosts.yml":      "web:\n  hosts:\n    a: [\n",
		"plain-empty.txt":        "# nothing yet\n",
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		path, want string
		is         error
	}{
		{p("nope"), "inventory: file does not exist: " + p("nope") + "; check the path, or create it with one host per line", ErrNotFound},
		{p("script"), p("script") + ":1: this is an inventory script, which Patrol does not run; save its output with `" + p("script") + " --list > inventory.json` and use that", ErrUnsupported},
		{p("only-ignored"), p("only-ignored") + ": inventory: no hosts; files Ansible ignores in an inventory directory were skipped (" +
			p("only-ignored/hosts.ini") + ", " + p("only-ignored/hosts.txt") + "): rename them without that extension", ErrEmpty},
		{p("empty"), p("empty") + ": inventory: no hosts; add hosts to a group, e.g. [web] then web1 on the next line", ErrEmpty},
		{p("plain-empty.txt"), p("plain-empty.txt") + ": inventory: no hosts (only blank lines and comments); add one host per line, e.g. web1 or web1:22", ErrEmpty},
		{p("badvars/hosts"), p("badvars/group_vars/web") + ": a variables file must be a mapping of variable names to values, not a list", ErrSyntax},
		{p("vault/hosts"), p("vault/host_vars/w1.yml") + ":1: the file is encrypted with ansible-vault, which Patrol cannot decrypt; decrypt it with ansible-vault decrypt", ErrUnsupported},
		{p("badyaml/hosts.yml"), p("badyaml/hosts.yml") + ":3: invalid YAML: did not find expected node content", ErrSyntax},
	}
	for _, tt := range tests {
		_, err := Load(tt.path)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Load(%s) error\n got %v\nwant %s", tt.path, err, tt.want)
		}
		if !errors.Is(err, tt.is) {
			t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
		}
	}
}

func TestGroups(t *testing.T) {
	inv := fixture(t)
	want := []string{"all", "canary", "db", "lb", "prod", "ungrouped", "web"}
	if got := inv.Groups(); !reflect.DeepEqual(got, want) {
		t.Errorf("Groups() = %q, want %q", got, want)
	}
}
