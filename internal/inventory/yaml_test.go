package inventory

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// yamlVar reads "v: <src>" and renders v as Host.Vars would hold it.
func yamlVar(t *testing.T, doc string) (string, error) {
	t.Helper()
	root, err := readYAML([]byte(doc), "vars.yml")
	if err != nil {
		return "", err
	}
	v, ok := root.(*omap).get("v")
	if !ok {
		t.Fatalf("no v in %q", doc)
	}
	return render(v)
}

func TestYAMLScalars(t *testing.T) {
	tests := []struct{ src, want string }{
		{"yes", "True"}, {"No", "False"}, {"on", "True"}, {"OFF", "False"},
		{"true", "True"}, {"False", "False"}, {"y", "y"}, {"n", "n"},
		{"~", ""}, {"null", ""}, {"", ""}, {"NULL", ""},
		{"42", "42"}, {"+1", "1"}, {"-0", "0"}, {"1_000", "1000"}, {"1_", "1"},
		{"0755", "493"}, {"08", "08"}, {"0o17", "0o17"}, {"0x1F", "31"}, {"0b101", "5"}, {"-0b11", "-3"},
		{"1:30", "90"}, {"-1:00:01", "-3601"},
		{"1.5", "1.5"}, {"1.", "1.0"}, {".5", "0.5"}, {"-.5", "-.5"}, {"1_0.5", "10.5"},
		{"1e3", "1e3"}, {"1.0e+3", "1000.0"}, {"1.5E-5", "1.5e-05"}, {"1:30.5", "90.5"},
		{".inf", "inf"}, {"-.Inf", "-inf"}, {".NaN", "nan"},
		{"2024-01-02", "2024-01-02"}, {"2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"},
		{"'0755'", "0755"}, {`"yes"`, "yes"}, {"!!str 123", "123"}, {"!!int '42'", "42"},
		{"!!float 1", "1.0"}, {"!!bool 'yes'", "True"}, {"!!null ''", ""},
		{"!unsafe '{{ x }}'", "{{ x }}"},
		{"[1, a, 2.5, true, null]", `[1,"a",2.5,true,null]`},
		{"{b: 1, a: [x, y]}", `{"b":1,"a":["x","y"]}`},
		{"|\n  line one\n  line two\n", "line one\nline two\n"},
		{">\n  folded\n  text\n", "folded text\n"},
		{"<a&b>", "<a&b>"},
		{"=", "="},
	}
	for _, tt := range tests {
		got, err := yamlVar(t, "v: "+tt.src)
		if err != nil || got != tt.want {
			t.Errorf("v: %s = %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
}

func TestYAMLMergeAndAliases(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"b: &b {x: 1, y: 2}\nv: {<<: *b, y: 3}", `{"x":1,"y":3}`},
		{"b: &b {x: 1, y: 2}\nv:\n  y: 3\n  <<: *b", `{"x":1,"y":3}`},
		{"a: &a {x: a}\nb: &b {x: b, z: b}\nv: {<<: [*a, *b]}", `{"x":"a","z":"b"}`},
		{"a: &a [1, 2]\nv: [*a, *a]", "[[1,2],[1,2]]"},
		{"a: &a hello\nv: *a", "hello"},
	}
	for _, tt := range tests {
		got, err := yamlVar(t, tt.doc)
		if err != nil || got != tt.want {
			t.Errorf("%q: v = %q, %v; want %q", tt.doc, got, err, tt.want)
		}
	}
}

func TestParseYAML(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Host
	}{
		{"groups, children and vars", `
all:
  vars: {a: all, b: all, c: all}
  children:
    prod:
      vars: {b: prod, c: prod}
      children:
        web:
          vars: {c: web}
          hosts:
            web1: {d: host}
`, []Host{{Name: "web1", Address: "web1", Groups: gs("prod", "web"), Vars: vs("a=all", "b=prod", "c=web", "d=host")}}},
		{"host patterns", `
web:
  hosts:
    web[1:2]:
    "api:8443":
    "[2001:db8::1]:22":
    alias: {ansible_host: 10.0.0.1, ansible_port: "2222"}
`, []Host{
			{Name: "web1", Address: "web1", Groups: gs("web")},
			{Name: "web2", Address: "web2", Groups: gs("web")},
			{Name: "api", Address: "api", Port: 8443, Groups: gs("web"), Vars: vs("ansible_port=8443")},
			{Name: "2001:db8::1", Address: "2001:db8::1", Port: 22, Groups: gs("web"), Vars: vs("ansible_port=22")},
			{Name: "alias", Address: "10.0.0.1", Port: 2222, Groups: gs("web"), Vars: vs("ansible_host=10.0.0.1", "ansible_port=2222")},
		}},
		{"one host as text", "web:\n  hosts: web1\n", []Host{{Name: "web1", Address: "web1", Groups: gs("web")}}},
		{"a host's variables may be empty or falsy", "web:\n  hosts:\n    a: ''\n    b: {}\n    c: 0\n", []Host{
			{Name: "a", Address: "a", Groups: gs("web")},
			{Name: "b", Address: "b", Groups: gs("web")},
			{Name: "c", Address: "c", Groups: gs("web")},
		}},
		{"hosts listed under all are ungrouped", "all:\n  hosts:\n    h1:\n", []Host{{Name: "h1", Address: "h1"}}},
		{"priority", `
a: {hosts: {h: }, vars: {x: a, ansible_group_priority: 10}}
b: {hosts: {h: }, vars: {x: b}}
`, []Host{{Name: "h", Address: "h", Groups: gs("a", "b"), Vars: vs("x=a")}}},
		{"JSON is read as JSON", `{"web": {"hosts": {"h": {"n": 1e3, "s": "yes"}}}}`, []Host{
			{Name: "h", Address: "h", Groups: gs("web"), Vars: vs("n=1000.0", "s=yes")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseYAML(strings.NewReader(tt.in), "hosts.yml")
			if err != nil {
				t.Fatalf("ParseYAML: %v", err)
			}
			checkHosts(t, inv.Hosts(), tt.want)
		})
	}
}

func TestParseYAMLInvalid(t *testing.T) {
	tests := []struct {
		name, in, want string
		is             error
	}{
		{"not YAML", "all:\n  hosts:\n    a:\n  - x\n", `hosts.yml:1: invalid YAML: did not find expected key`, ErrSyntax},
		{"not a mapping", "- a\n- b\n", `hosts.yml: a YAML inventory is a mapping of group names, not a list`, ErrSyntax},
		{"duplicate key", "all:\n  hosts:\n    a:\n    a:\n", `hosts.yml:4: key "a" is already set on line 3; remove one (Ansible would keep only the last)`, ErrDuplicate},
		{"unknown group key", "all:\n  host:\n    a:\n", `hosts.yml:2: unexpected key "host" in group "all": a group has only hosts, vars and children`, ErrSyntax},
		{"hosts as a list", "all:\n  hosts: [a, b]\n", `hosts.yml:2: hosts of group "all" must be a mapping, not a list`, ErrSyntax},
		{"group not a mapping", "web: [a]\n", `hosts.yml:1: group "web" must map to hosts, vars or children, not a list`, ErrSyntax},
		{"host vars not a mapping", "all:\n  hosts:\n    a: x\n", `hosts.yml:3: host "a" must map to its variables, not the text "x"`, ErrSyntax},
		{"number as host", "all:\n  hosts:\n    1:\n", `hosts.yml:3: host pattern 1 must be text; quote it`, ErrSyntax},
		{"number as group", "1:\n  hosts: {a: }\n", `hosts.yml:1: group name 1 must be text; quote it`, ErrSyntax},
		{"plugin configuration", "plugin: aws_ec2\nregions: [eu-west-1]\n", "hosts.yml:1: this is the configuration of inventory plugin \"aws_ec2\", which Patrol cannot run; export the inventory with `ansible-inventory -i hosts.yml --list > inventory.json` and use that", ErrUnsupported},
		{"vault value", "web:\n  hosts: {a: }\n  vars:\n    x: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n", `hosts.yml:4: a value encrypted with ansible-vault, which Patrol cannot decrypt`, ErrUnsupported},
		{"vault file", "$ANSIBLE_VAULT;1.1;AES256\n6162\n", `hosts.yml:1: the file is encrypted with ansible-vault, which Patrol cannot decrypt; decrypt it with ansible-vault decrypt`, ErrUnsupported},
		{"unknown tag", "web:\n  vars: {x: !!binary aGk=}\n", `hosts.yml:2: unsupported YAML tag !!binary`, ErrSyntax},
		{"bad int", "web:\n  vars: {x: !!int abc}\n", `hosts.yml:2: "abc" is not a valid !!int`, ErrSyntax},
		{"recursive alias", "a: &a [*a]\n", `hosts.yml:1: YAML alias refers to the value it is inside of`, ErrSyntax},
		{"merge of a scalar", "b: &b x\nv: {<<: *b}\n", `hosts.yml:2: a merge key (<<) takes a mapping or a list of mappings, not the text "x"`, ErrSyntax},
		{"two documents", "a:\n---\nb:\n", `hosts.yml:2: a second YAML document; an inventory file holds one`, ErrSyntax},
		{"loop of groups", "a:\n  children:\n    b:\n      children:\n        a:\n", `hosts.yml:3: making "b" a child of "a" would make a loop of groups`, ErrSyntax},
		{"range too large", "web:\n  hosts:\n    h[1:2000000]:\n", `hosts.yml:3: host pattern "h[1:2000000]" makes more than 1000000 hosts; split the inventory`, ErrTooMany},
		{"empty", "# nothing\n", `hosts.yml: inventory: no hosts; add hosts to a group, e.g. [web] then web1 on the next line`, ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseYAML(strings.NewReader(tt.in), "hosts.yml")
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}

func TestYAMLAliasBomb(t *testing.T) {
	// Each level doubles the last: rendered, the value would be gigabytes.
	var b strings.Builder
	b.WriteString("a0: &a0 [" + strings.Repeat("x", 100) + "]\n")
	for i := 1; i <= 30; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [*a" + itoa(i-1) + ", *a" + itoa(i-1) + "]\n")
	}
	doc := "web:\n  hosts: {h: }\n  vars:\n    bomb: *a30\n"
	_, err := ParseYAML(strings.NewReader("defs:\n  vars:\n"+indent(b.String(), "    ")+doc), "bomb.yml")
	if err == nil || !strings.Contains(err.Error(), `variable "bomb": value longer than 1024 KiB as text`) {
		t.Errorf("error %v, want the value refused as too large", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}
