package inventory

import (
	"errors"
	"strings"
	"testing"
)

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Host
	}{
		{"--list shape", `{
  "_meta": {"hostvars": {"a": {"ansible_host": "10.0.0.1", "n": 1, "f": 2.50, "e": 1e3, "b": true, "z": null, "l": [1, "x"]},
                         "b": {"ansible_port": 2202}, "unlisted": {"x": 1}}},
  "all": {"children": ["ungrouped", "app"], "vars": {"region": "eu"}},
  "app": {"hosts": ["a", "b"], "vars": {"tier": "app"}, "children": ["app_eu"]},
  "app_eu": {"hosts": ["c"]},
  "ungrouped": {"hosts": ["u"]}
}`, []Host{
			{Name: "u", Address: "u", Vars: vs("region=eu")},
			{Name: "a", Address: "10.0.0.1", Groups: gs("app"), Vars: vs("ansible_host=10.0.0.1", "n=1", "f=2.5", "e=1000.0", "b=True", "z=", "l=[1,\"x\"]", "region=eu", "tier=app")},
			{Name: "b", Address: "b", Port: 2202, Groups: gs("app"), Vars: vs("ansible_port=2202", "region=eu", "tier=app")},
			{Name: "c", Address: "c", Groups: gs("app", "app_eu"), Vars: vs("region=eu", "tier=app")},
		}},
		{"a group as a list of hosts", `{"web": ["w1", "w2"], "_meta": {"hostvars": {}}}`, []Host{
			{Name: "w1", Address: "w1", Groups: gs("web")},
			{Name: "w2", Address: "w2", Groups: gs("web")},
		}},
		{"a group with neither hosts, vars nor children is a host", `{"h1": {"x": 1}, "web": ["w1"]}`, []Host{
			{Name: "h1", Address: "h1", Groups: gs("h1"), Vars: vs("x=1")},
			{Name: "w1", Address: "w1", Groups: gs("web")},
		}},
		{"names are not patterns", `{"web": {"hosts": ["w[1:2]"]}, "_meta": {"hostvars": {"w[1:2]": {"ansible_host": "w1"}}}}`, []Host{
			{Name: "w[1:2]", Address: "w1", Groups: gs("web"), Vars: vs("ansible_host=w1")},
		}},
		{"without _meta, no host variables", `{"web": {"hosts": ["w1"], "vars": {"x": "1"}}}`, []Host{
			{Name: "w1", Address: "w1", Groups: gs("web"), Vars: vs("x=1")},
		}},
		{"YAML shape", `{"all": {"children": {"web": {"hosts": {"w[1:2]": {"r": "x"}, "api:8443": null}}}}}`, []Host{
			{Name: "w1", Address: "w1", Groups: gs("web"), Vars: vs("r=x")},
			{Name: "w2", Address: "w2", Groups: gs("web"), Vars: vs("r=x")},
			{Name: "api", Address: "api", Port: 8443, Groups: gs("web"), Vars: vs("ansible_port=8443")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseJSON(strings.NewReader(tt.in), "inventory.json")
			if err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			checkHosts(t, inv.Hosts(), tt.want)
		})
	}
}

func TestParseJSONInvalid(t *testing.T) {
	tests := []struct {
		name, in, want string
		is             error
	}{
		{"truncated", "{\"web\": [\"a\"\n", `inv.json:2: invalid JSON: the file ends before a bracket or brace is closed`, ErrSyntax},
		{"not JSON", "{\"web\": [\"a\"]]\n", `inv.json:1: invalid JSON: invalid character ']' after object key:value pair`, ErrSyntax},
		{"duplicate key", "{\"web\": [\"a\"],\n \"web\": []}", `inv.json:2: key "web" is already set on line 1; remove one (Ansible would keep only the last)`, ErrDuplicate},
		{"hosts not a list", `{"web": {"hosts": "a"}, "_meta": {}}`, `inv.json:1: hosts of group "web" must be a list of host names, not the text "a"`, ErrSyntax},
		{"host not text", `{"web": {"hosts": ["a", 1]}}`, `inv.json:1: group "web" lists host the value 1, which is not text`, ErrSyntax},
		{"children not a list", `{"web": {"hosts": ["a"], "children": "x"}}`, `inv.json:1: children of group "web" must be a list of group names, not the text "x"`, ErrSyntax},
		{"vars not a mapping", `{"web": {"hosts": ["a"], "vars": [1]}}`, `inv.json:1: vars of group "web" must be a mapping, not a list`, ErrSyntax},
		{"hostvars not a mapping", `{"web": ["a"], "_meta": {"hostvars": {"a": [1]}}}`, `inv.json:1: _meta.hostvars of "a" must be a mapping, not a list`, ErrSyntax},
		{"_meta not a mapping", `{"web": ["a"], "_meta": []}`, `inv.json:1: _meta must be a mapping with hostvars, not a list`, ErrSyntax},
		{"loop", `{"a": {"children": ["b"]}, "b": {"hosts": ["h"], "children": ["a"]}}`, `inv.json:1: making "a" a child of "b" would make a loop of groups`, ErrSyntax},
		{"huge integer", `{"web": ["a"], "_meta": {"hostvars": {"a": {"n": ` + strings.Repeat("9", 5000) + `}}}}`, `inv.json:1: number 99999999999999999999... has more than 4300 digits`, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJSON(strings.NewReader(tt.in), "inv.json")
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}
