package inventory

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// vs builds Host.Vars from "key=value" pairs; nil for none.
func vs(pairs ...string) map[string]string {
	if len(pairs) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return m
}

// gs builds Host.Groups; nil for none.
func gs(groups ...string) []string {
	if len(groups) == 0 {
		return nil
	}
	return groups
}

func checkHosts(t *testing.T, got, want []Host) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d hosts %v, want %d %v", len(got), names(got), len(want), names(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("host %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestParseINI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Host
	}{
		{"hosts before any section are ungrouped", "web1\n[db]\ndb1\n", []Host{
			{Name: "web1", Address: "web1"},
			{Name: "db1", Address: "db1", Groups: gs("db")},
		}},
		{"comments", "# c\n; c\n  # c\n[web] # c\nweb1 # c\n", []Host{
			{Name: "web1", Address: "web1", Groups: gs("web")},
		}},
		{"host:port, IPv4, IPv6", "web1:2222\n10.0.0.1:22\n10.0.0.2\n[2001:db8::1]:443\n2001:db8::2\n", []Host{
			{Name: "web1", Address: "web1", Port: 2222, Vars: vs("ansible_port=2222")},
			{Name: "10.0.0.1", Address: "10.0.0.1", Port: 22, Vars: vs("ansible_port=22")},
			{Name: "10.0.0.2", Address: "10.0.0.2"},
			{Name: "2001:db8::1", Address: "2001:db8::1", Port: 443, Vars: vs("ansible_port=443")},
			{Name: "2001:db8::2", Address: "2001:db8::2"},
		}},
		{"aliases", "[web]\nfront ansible_host=10.0.0.9 ansible_port=2200\nback:22 ansible_port=2201\n", []Host{
			{Name: "front", Address: "10.0.0.9", Port: 2200, Groups: gs("web"), Vars: vs("ansible_host=10.0.0.9", "ansible_port=2200")},
			{Name: "back", Address: "back", Port: 2201, Groups: gs("web"), Vars: vs("ansible_port=2201")},
		}},
		{"ranges", "[web]\nweb[01:02]\ndb-[a:b]:5432\nw[0:20:10]\n", []Host{
			{Name: "web01", Address: "web01", Groups: gs("web")},
			{Name: "web02", Address: "web02", Groups: gs("web")},
			{Name: "db-a", Address: "db-a", Port: 5432, Groups: gs("web"), Vars: vs("ansible_port=5432")},
			{Name: "db-b", Address: "db-b", Port: 5432, Groups: gs("web"), Vars: vs("ansible_port=5432")},
			{Name: "w0", Address: "w0", Groups: gs("web")},
			{Name: "w10", Address: "w10", Groups: gs("web")},
			{Name: "w20", Address: "w20", Groups: gs("web")},
		}},
		{"values are Python literals", `h n=8080 f=1.50 b=True z=None l=[1,2] s='a b' w=web o=017 c=a#b`, []Host{
			{Name: "h", Address: "h", Vars: vs("n=8080", "f=1.5", "b=True", "z=", "l=[1,2]", "s=a b", "w=web", "o=017", "c=a")},
		}},
		{"vars sections", "[web]\nweb1\n[web:vars]\nmsg = hello world # not a comment\nport = 80 # a comment\nflag=yes\n", []Host{
			{Name: "web1", Address: "web1", Groups: gs("web"), Vars: vs("msg=hello world # not a comment", "port=80", "flag=yes")},
		}},
		{"children, declared before or after", "[prod:children]\nweb\n[web]\nweb1\n[db]\ndb1\n[prod:children]\ndb\n", []Host{
			{Name: "web1", Address: "web1", Groups: gs("prod", "web")},
			{Name: "db1", Address: "db1", Groups: gs("db", "prod")},
		}},
		{"vars before the group", "[web:vars]\nx=1\n[web]\nweb1\n", []Host{
			{Name: "web1", Address: "web1", Groups: gs("web"), Vars: vs("x=1")},
		}},
		{"precedence: host over child over parent over all", `
[all:vars]
a=all
b=all
c=all
d=all
[prod:vars]
b=prod
c=prod
d=prod
[web:vars]
c=web
d=web
[prod:children]
web
[web]
web1 d=host
`, []Host{
			{Name: "web1", Address: "web1", Groups: gs("prod", "web"), Vars: vs("a=all", "b=prod", "c=web", "d=host")},
		}},
		{"same depth: priority, then name", `
[a]
h
[b]
h
[c]
h
[a:vars]
x=a
y=a
[b:vars]
x=b
y=b
ansible_group_priority=0
[c:vars]
x=c
`, []Host{
			{Name: "h", Address: "h", Groups: gs("a", "b", "c"), Vars: vs("x=c", "y=a")},
		}},
		{"a host in two groups", "[a]\nh x=1\n[b]\nh y=2\n", []Host{
			{Name: "h", Address: "h", Groups: gs("a", "b"), Vars: vs("x=1", "y=2")},
		}},
		{"the port of a host is set where it is first listed", "[a]\nh:22\n[b]\nh:33\n", []Host{
			{Name: "h", Address: "h", Port: 22, Groups: gs("a", "b"), Vars: vs("ansible_port=22")},
		}},
		{"a host listed under all", "[all]\nh\n", []Host{
			{Name: "h", Address: "h"},
		}},
		{"all order: all, ungrouped, then groups top-down", "[b]\nb1\n[a:children]\nb\n[a]\na1\nu1\n[all]\nx\n", []Host{
			{Name: "x", Address: "x"},
			{Name: "a1", Address: "a1", Groups: gs("a")},
			{Name: "u1", Address: "u1", Groups: gs("a")},
			{Name: "b1", Address: "b1", Groups: gs("a", "b")},
		}},
		{"a nested ungrouped loses its hosts, as in Ansible", "h1\n[p:children]\nungrouped\n[q]\nh2\n", []Host{
			{Name: "h2", Address: "h2", Groups: gs("q")},
		}},
		{"CRLF and byte order mark", "\uFEFF[web]\r\nweb1\r\n", []Host{
			{Name: "web1", Address: "web1", Groups: gs("web")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseINI(strings.NewReader(tt.in), "hosts.ini")
			if err != nil {
				t.Fatalf("ParseINI: %v", err)
			}
			checkHosts(t, inv.Hosts(), tt.want)
		})
	}
}

func TestParseINIInvalid(t *testing.T) {
	tests := []struct {
		name, in, want string
		is             error
	}{
		{"unknown section type", "[web:foo]\n", `hosts.ini:1: section [web:foo] has unknown type "foo"; use [web], [web:children] or [web:vars]`, ErrSyntax},
		{"spaces in a section", "[ web ]\n", `hosts.ini:1: invalid section [ web ]: a section is [group], [group:children] or [group:vars], with no spaces; a bare IPv6 address is written without brackets`, ErrSyntax},
		{"word that is not a variable", "[web]\nweb1 foo\n", `hosts.ini:2: expected key=value after the host, got "foo"`, ErrSyntax},
		{"variable without a name", "web1 =x\n", `hosts.ini:1: variable with no name in "=x"`, ErrSyntax},
		{"open quote", "web1 x=\"a\n", `hosts.ini:1: cannot read host line "web1 x=\"a": no closing quotation`, ErrSyntax},
		{"vars without =", "[web]\nh\n[web:vars]\nx\n", `hosts.ini:4: expected key=value in [web:vars], got "x"`, ErrSyntax},
		{"child group name", "[p:children]\na b\n", `hosts.ini:2: expected a group name in [p:children], got "a b"`, ErrSyntax},
		{"vars of an undefined group", "h\n[web:vars]\nx=1\n", `hosts.ini:2: section [web:vars] is for group "web", which has no [web] or [web:children] section`, ErrSyntax},
		{"child undefined", "h\n[p:children]\nq\n", `hosts.ini:3: section [p:children] names group "q", which is defined nowhere; add a [q] section`, ErrSyntax},
		{"loop of groups", "[a:children]\nb\n[b:children]\na\n[b]\nh\n", `hosts.ini:4: making "a" a child of "b" would make a loop of groups`, ErrSyntax},
		{"own child", "[a]\nh\n[a:children]\na\n", `hosts.ini:4: group "a" cannot be a child of itself`, ErrSyntax},
		{"trailing colon", "web1:\n", `hosts.ini:1: host "web1:" ends in ':'; write a port after it, or drop the ':'`, ErrSyntax},
		{"port zero", "web1:0\n", `hosts.ini:1: host "web1:0": invalid port (must be 1-65535)`, ErrSyntax},
		{"port too big", "web1:65536\n", `hosts.ini:1: host "web1:65536": invalid port (must be 1-65535)`, ErrSyntax},
		{"bad ansible_port", "web1 ansible_port=http\n", `hosts.ini:1: host "web1": invalid ansible_port "http" (must be 1-65535)`, ErrSyntax},
		{"template address", "web1 ansible_host='{{ ip }}'\n", `hosts.ini:1: host "web1": ansible_host "{{ ip }}" is a Jinja template; Patrol does not render templates, write the address itself`, ErrSyntax},
		{"name that is no address", "web!1\n", `hosts.ini:1: host "web!1": "web!1" is not a host name or IP address: use only letters, digits, '-', '.' and '_'; set ansible_host to the address to connect to`, ErrSyntax},
		{"bad range", "web[1:3\n", `hosts.ini:1: host pattern "web[1:3" has '[' without ']'; write a range as web[01:20]`, ErrSyntax},
		{"empty range", "web[3:1]\n", `hosts.ini:1: host pattern "web[3:1]": range [3:1] is empty: write the smaller bound first`, ErrSyntax},
		{"range too large", "web[0:1000000]\n", `hosts.ini:1: host pattern "web[0:1000000]" makes more than 1000000 hosts; split the inventory`, ErrTooMany},
		{"YAML in an INI file", "[web]\n---\n", `hosts.ini:2: host "---": '---' starts a YAML document; name a YAML inventory .yml`, ErrSyntax},
		{"bad priority", "[a]\nh\n[a:vars]\nansible_group_priority=high\n", `hosts.ini:4: group "a": ansible_group_priority "high" is not a number`, ErrSyntax},
		{"invalid UTF-8", "web\xff\n", `hosts.ini:1: line is not valid UTF-8`, ErrSyntax},
		{"control character", "web\x00\n", `hosts.ini:1: line contains control character '\x00'`, ErrSyntax},
		{"line too long", "h x=" + strings.Repeat("a", maxLineLen) + "\n", `hosts.ini:1: line longer than 64 KiB`, ErrSyntax},
		{"no hosts", "[web]\n[web:vars]\nx=1\n", `hosts.ini: inventory: no hosts; add hosts to a group, e.g. [web] then web1 on the next line`, ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseINI(strings.NewReader(tt.in), "hosts.ini")
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}

func TestTooManyHosts(t *testing.T) {
	// The limit counts hosts across lines and files, not only within a range.
	in := "[a]\nh[1:6]\n[b]\ng[1:6]\n"
	_, err := parseLimited(strings.NewReader(in), "hosts.ini", parseINI, 10)
	want := "hosts.ini:4: more than 10 hosts; split the inventory into several jobs"
	if err == nil || err.Error() != want || !errors.Is(err, ErrTooMany) {
		t.Errorf("error %v, want %s (ErrTooMany)", err, want)
	}
	if _, err := parseLimited(strings.NewReader(in), "hosts.ini", parseINI, 12); err != nil {
		t.Errorf("12 hosts with a limit of 12: %v", err)
	}
}
