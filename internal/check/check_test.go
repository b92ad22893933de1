package check

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// TestReference: every check type documents every param it accepts, and
// its verdicts.
func TestReference(t *testing.T) {
	ref := Reference()
	for _, typ := range Types() {
		k := kinds[typ]
		if !strings.Contains(ref, typ+"\n  params: ") || k.doc[1] == "" {
			t.Errorf("%s: not in Reference, or no verdicts", typ)
		}
		for _, p := range k.params {
			if !strings.Contains(k.doc[0], p+" (") && !strings.Contains(k.doc[0], p+",") && !strings.HasSuffix(k.doc[0], p) {
				t.Errorf("%s: param %s undocumented in %q", typ, p, k.doc[0])
			}
		}
	}
}

func TestTypes(t *testing.T) {
	if got, want := Types(), []string{"dns", "exec", "http", "icmp", "noop", "ssh", "tcp", "tls"}; !slices.Equal(got, want) {
		t.Errorf("Types() = %v, want %v", got, want)
	}
}

func TestNewValid(t *testing.T) {
	tests := []struct {
		typ    string
		params map[string]string
	}{
		{"tcp", nil},
		{"tcp", map[string]string{"port": "22", "timeout": "500ms"}},
		{"tcp", map[string]string{"port": "{{.Vars.ssh_port}}"}},
		{"http", nil},
		{"http", map[string]string{"url": "https://{{.Address}}/health", "status": "200,204", "timeout": "1m", "method": "post"}},
		{"http", map[string]string{"url": "http://example.com:8080/"}},
		{"noop", map[string]string{"sleep": "0s", "fail": "false"}},
		{"tcp", map[string]string{"send": `PING\r\n{{.Host}}`, "expect": `^\+PONG\r\n`}},
		{"http", map[string]string{"body": `"status":\s*"ok"`, "insecure": "true", "max_redirects": "0",
			"header": "Authorization: Bearer {{.Vars.token}}\nX-Check: patrol"}},
		{"exec", map[string]string{"name": "disk"}},
		{"exec", map[string]string{"name": "disk", "args": `-w 80 {{index .Vars "mount point"}} {{.Address}}`, "timeout": "1m"}},
		{"ssh", map[string]string{"name": "df", "args": "{{.Vars.mount}}", "port": "{{.Vars.ssh_port}}",
			"host_key_check": "accept-new", "connect_timeout": "2s", "timeout": "1m"}},
		{"ssh", map[string]string{"name": "df", "host_key_check": "strict"}},
		{"exec", map[string]string{"name": "disk", "nagios": "false"}},
		{"tls", nil},
		{"tls", map[string]string{"port": "{{.Vars.https_port}}", "server_name": "{{.Host}}.example.com", "warn_days": "14", "fail_days": "14",
			"insecure": "true", "ca": "/etc/patrol/ca.pem", "timeout": "3s"}},
		{"http", map[string]string{"ca": "/etc/patrol/ca.pem"}},
		{"dns", nil},
		{"icmp", nil},
		{"icmp", map[string]string{"count": "10", "interval": "1s", "timeout": "15s", "warn_loss": "10%", "fail_loss": "50", "warn_rtt": "50ms", "fail_rtt": "200ms"}},
		{"dns", map[string]string{"name": "www.{{.Vars.domain}}", "type": "mx", "server": "{{.Address}}:53", "expect": "10 mail.example.com", "timeout": "2s"}},
		{"dns", map[string]string{"server": "[2001:db8::53]:5353", "expect": "/^10\\./"}},
	}
	for _, tt := range tests {
		if _, err := New(tt.typ, tt.params); err != nil {
			t.Errorf("New(%q, %v): %v", tt.typ, tt.params, err)
		}
	}
}

func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		params  map[string]string
		is      error
		wantErr string
	}{
		{"unknown type", "ping", nil, ErrUnknownType,
			`check: unknown type "ping"; known types: dns, exec, http, icmp, noop, ssh, tcp, tls`},
		{"unknown param", "tcp", map[string]string{"prot": "22"}, ErrBadParam,
			`check: bad param: tcp check has no param "prot"; known params: expect, port, send, timeout`},
		{"param of another type", "noop", map[string]string{"url": "http://x/"}, ErrBadParam,
			`check: bad param: noop check has no param "url"; known params: fail, sleep, warn`},
		{"timeout not a duration", "tcp", map[string]string{"timeout": "5"}, ErrBadParam,
			`check: bad param: tcp timeout="5": want a positive duration such as 5s or 500ms`},
		{"timeout zero", "http", map[string]string{"timeout": "0s"}, ErrBadParam,
			`check: bad param: http timeout="0s": want a positive duration such as 5s or 500ms`},
		{"sleep negative", "noop", map[string]string{"sleep": "-1s"}, ErrBadParam,
			`check: bad param: noop sleep="-1s": want a duration such as 0s, 100ms or 2s`},
		{"fail not a bool", "noop", map[string]string{"fail": "yes"}, ErrBadParam,
			`check: bad param: noop fail="yes": want true or false`},
		{"port out of range", "tcp", map[string]string{"port": "70000"}, ErrBadParam,
			`check: bad param: tcp port="70000": want a port 1-65535, or a template such as {{.Vars.ssh_port}}`},
		{"port empty", "tcp", map[string]string{"port": ""}, ErrBadParam,
			`check: bad param: tcp port="": want a port 1-65535, or a template such as {{.Vars.ssh_port}}`},
		{"port template syntax", "tcp", map[string]string{"port": "{{.Vars.port"}, ErrBadParam,
			`check: bad param: tcp port="{{.Vars.port": template: port:1: unclosed action`},
		{"url template syntax", "http", map[string]string{"url": "http://{{.Address}/"}, ErrBadParam,
			`check: bad param: http url="http://{{.Address}/": template: url:1: bad character U+007D '}'`},
		{"url template unknown function", "http", map[string]string{"url": "http://{{lower .Address}}/"}, ErrBadParam,
			`check: bad param: http url="http://{{lower .Address}}/": template: url:1: function "lower" not defined`},
		{"url not http", "http", map[string]string{"url": "ftp://web1/"}, ErrBadParam,
			`check: bad param: http url="ftp://web1/": want an http:// or https:// URL, e.g. http://{{.Address}}:8080/health`},
		{"url relative", "http", map[string]string{"url": "/health"}, ErrBadParam,
			`check: bad param: http url="/health": want an http:// or https:// URL, e.g. http://{{.Address}}:8080/health`},
		{"status not a number", "http", map[string]string{"status": "2xx"}, ErrBadParam,
			`check: bad param: http status="2xx": want HTTP status codes 100-599, e.g. 200 or 200,204`},
		{"status out of range", "http", map[string]string{"status": "200,999"}, ErrBadParam,
			`check: bad param: http status="200,999": want HTTP status codes 100-599, e.g. 200 or 200,204`},
		{"status empty item", "http", map[string]string{"status": "200,"}, ErrBadParam,
			`check: bad param: http status="200,": want HTTP status codes 100-599, e.g. 200 or 200,204`},
		{"method with space", "http", map[string]string{"method": "GET /"}, ErrBadParam,
			`check: bad param: http method="GET /": want an HTTP method such as GET or HEAD`},
		{"method empty", "http", map[string]string{"method": ""}, ErrBadParam,
			`check: bad param: http method="": want an HTTP method such as GET or HEAD`},
		{"expect not a regexp", "tcp", map[string]string{"expect": "^(SSH"}, ErrBadParam,
			"check: bad param: tcp expect=\"^(SSH\": want a regular expression (Go RE2 syntax): error parsing regexp: missing closing ): `^(SSH`"},
		{"send template syntax", "tcp", map[string]string{"send": "{{.Host"}, ErrBadParam,
			`check: bad param: tcp send="{{.Host": template: send:1: unclosed action`},
		{"body not a regexp", "http", map[string]string{"body": "a**"}, ErrBadParam,
			"check: bad param: http body=\"a**\": want a regular expression (Go RE2 syntax): error parsing regexp: invalid nested repetition operator: `**`"},
		{"header without colon", "http", map[string]string{"header": "Authorization Bearer x"}, ErrBadParam,
			`check: bad param: http header="Authorization Bearer x": want "Name: value" lines, e.g. Authorization: Bearer {{.Vars.token}}`},
		{"header name with space", "http", map[string]string{"header": "X Y: 1"}, ErrBadParam,
			`check: bad param: http header="X Y: 1": want "Name: value" lines, e.g. Authorization: Bearer {{.Vars.token}}`},
		{"insecure not a bool", "http", map[string]string{"insecure": "yes"}, ErrBadParam,
			`check: bad param: http insecure="yes": want true or false`},
		{"max_redirects negative", "http", map[string]string{"max_redirects": "-1"}, ErrBadParam,
			`check: bad param: http max_redirects="-1": want a number of redirects 0-100`},
		{"exec without name", "exec", nil, ErrBadParam,
			`check: bad param: exec check needs --param name=NAME: the name of a command in the workers' --allow-exec list`},
		{"exec empty name", "exec", map[string]string{"name": ""}, ErrBadParam,
			`check: bad param: exec check needs --param name=NAME: the name of a command in the workers' --allow-exec list`},
		{"exec args template syntax", "exec", map[string]string{"name": "x", "args": "-v {{.Host"}, ErrBadParam,
			`check: bad param: exec args="-v {{.Host": word 2: template: args:1: unclosed action`},
		{"ssh without name", "ssh", map[string]string{"args": "/"}, ErrBadParam,
			`check: bad param: ssh check needs --param name=NAME: the name of a command in the workers' --allow-ssh list`},
		{"ssh host_key_check", "ssh", map[string]string{"name": "df", "host_key_check": "no"}, ErrBadParam,
			`check: bad param: ssh host_key_check="no": want strict or accept-new`},
		{"ssh connect_timeout", "ssh", map[string]string{"name": "df", "connect_timeout": "0"}, ErrBadParam,
			`check: bad param: ssh connect_timeout="0": want a positive duration such as 5s or 500ms`},
		{"exec nagios not a bool", "exec", map[string]string{"name": "x", "nagios": "maybe"}, ErrBadParam,
			`check: bad param: exec nagios="maybe": want true or false`},
		{"tls warn_days not a number", "tls", map[string]string{"warn_days": "30d"}, ErrBadParam,
			`check: bad param: tls warn_days="30d": want a whole number of days 0-3650, e.g. 30`},
		{"tls fail_days negative", "tls", map[string]string{"fail_days": "-1"}, ErrBadParam,
			`check: bad param: tls fail_days="-1": want a whole number of days 0-3650, e.g. 7`},
		{"tls fail_days above warn_days", "tls", map[string]string{"fail_days": "40"}, ErrBadParam,
			`check: bad param: tls fail_days="40": want at most warn_days (30): a certificate warns before it fails; lower fail_days or raise warn_days`},
		{"tls ca relative", "tls", map[string]string{"ca": "ca.pem"}, ErrBadParam,
			`check: bad param: tls ca="ca.pem": want the absolute path of a PEM file of CA certificates on the workers, e.g. /etc/patrol/ca.pem`},
		{"http ca relative", "http", map[string]string{"ca": "ca.pem"}, ErrBadParam,
			`check: bad param: http ca="ca.pem": want the absolute path of a PEM file of CA certificates on the workers, e.g. /etc/patrol/ca.pem`},
		{"dns unknown record type", "dns", map[string]string{"type": "PTR"}, ErrBadParam,
			`check: bad param: dns type="PTR": want one of A, AAAA, CNAME, MX, TXT, SRV`},
		{"dns server without a port", "dns", map[string]string{"server": "192.0.2.53"}, ErrBadParam,
			`check: bad param: dns server="192.0.2.53": want host:port of a DNS server, e.g. 192.0.2.53:53, [2001:db8::53]:53 or {{.Address}}:53`},
		{"dns server port out of range", "dns", map[string]string{"server": "ns1:99999"}, ErrBadParam,
			`check: bad param: dns server="ns1:99999": want host:port of a DNS server, e.g. 192.0.2.53:53, [2001:db8::53]:53 or {{.Address}}:53`},
		{"dns expect regexp", "dns", map[string]string{"expect": "/a(/"}, ErrBadParam,
			"check: bad param: dns expect=\"/a(/\": want /REGEXP/ with a regular expression (Go RE2 syntax) between the slashes: error parsing regexp: missing closing ): `a(`"},
		{"dns expect regexp as written", "dns", map[string]string{"expect": "/[/"}, ErrBadParam,
			"check: bad param: dns expect=\"/[/\": want /REGEXP/ with a regular expression (Go RE2 syntax) between the slashes: error parsing regexp: missing closing ]: `[`"},
		{"dns expect a lone slash", "dns", map[string]string{"expect": "/"}, ErrBadParam,
			`check: bad param: dns expect="/": want /REGEXP/, a regular expression between slashes that some answer must match, e.g. /^192\.0\.2\./ (not empty), or the answers wanted, comma separated`},
		{"dns expect an empty regexp", "dns", map[string]string{"expect": "//"}, ErrBadParam,
			`check: bad param: dns expect="//": want /REGEXP/, a regular expression between slashes that some answer must match, e.g. /^192\.0\.2\./ (not empty), or the answers wanted, comma separated`},
		{"dns expect empty", "dns", map[string]string{"expect": " , "}, ErrBadParam,
			`check: bad param: dns expect=" , ": want the answers wanted, comma separated (e.g. 192.0.2.1,192.0.2.2), or /REGEXP/`},
		{"dns name an IP", "dns", map[string]string{"name": "192.0.2.1"}, ErrBadParam,
			`check: bad param: dns name="192.0.2.1": want a DNS name such as www.example.com, or a template such as {{.Vars.fqdn}}`},
		{"icmp count out of range", "icmp", map[string]string{"count": "0"}, ErrBadParam,
			`check: bad param: icmp count="0": want a number of echo requests 1-100, e.g. 3`},
		{"icmp count too many", "icmp", map[string]string{"count": "1000"}, ErrBadParam,
			`check: bad param: icmp count="1000": want a number of echo requests 1-100, e.g. 3`},
		{"icmp interval too short", "icmp", map[string]string{"interval": "1ms"}, ErrBadParam,
			`check: bad param: icmp interval="1ms": want a duration 10ms-10s, e.g. 200ms`},
		{"icmp timeout too short for count", "icmp", map[string]string{"count": "20", "interval": "1s"}, ErrBadParam,
			`check: bad param: icmp count=20 at interval=1s needs a timeout of at least 20s, not 3s (the last request needs a second for its reply): pass --param timeout=20s, or lower count or interval`},
		{"icmp loss not a percentage", "icmp", map[string]string{"warn_loss": "some"}, ErrBadParam,
			`check: bad param: icmp warn_loss="some": want a percentage of requests 1-100, e.g. 20 or 20%`},
		{"icmp warn_loss above fail_loss", "icmp", map[string]string{"warn_loss": "60%", "fail_loss": "50%"}, ErrBadParam,
			`check: bad param: icmp warn_loss="60%": want at most fail_loss (50%): a host warns before it fails`},
		{"icmp rtt not a duration", "icmp", map[string]string{"fail_rtt": "100"}, ErrBadParam,
			`check: bad param: icmp fail_rtt="100": want a positive duration such as 5s or 500ms`},
		{"icmp warn_rtt above fail_rtt", "icmp", map[string]string{"warn_rtt": "1s", "fail_rtt": "100ms"}, ErrBadParam,
			`check: bad param: icmp warn_rtt="1s": want at most fail_rtt (100ms): a host warns before it fails`},
		{"tls server_name with a slash", "tls", map[string]string{"server_name": "https://x/"}, ErrBadParam,
			`check: bad param: tls server_name="https://x/": want a host name such as www.example.com, or a template such as {{.Vars.fqdn}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.typ, tt.params)
			if err == nil {
				t.Fatalf("New = %v, want error %q", c, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error\n got %q\nwant %q", err, tt.wantErr)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			// Validate reports the same problem.
			if verr := Validate(tt.typ, tt.params, nil); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Validate error = %v, want %v", verr, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	web1 := inventory.Host{Name: "web1:80", Address: "web1", Port: 80, Vars: map[string]string{"zone": "dc1", "ssh": "2222"}}
	web2 := inventory.Host{Name: "web2", Address: "web2"}
	v6 := inventory.Host{Name: "::1", Address: "::1"}
	hosts := []inventory.Host{web1, web2, v6}

	tests := []struct {
		name    string
		typ     string
		params  map[string]string
		hosts   []inventory.Host
		wantErr string // "" for none
		is      error
	}{
		{"noop needs nothing", "noop", nil, hosts, "", nil},
		{"http default url", "http", nil, hosts, "", nil},
		{"tcp with ports", "tcp", nil, []inventory.Host{web1}, "", nil},
		{"tcp port param covers hosts without one", "tcp", map[string]string{"port": "22"}, hosts, "", nil},
		{"tcp host without port", "tcp", nil, hosts, "host web2 has no port: write it as host:port in the inventory or pass --param port=N", ErrNoPort},
		{"missing var", "http", map[string]string{"url": "http://{{.Address}}/{{.Vars.zone}}"}, hosts,
			`host web2: param url: template: url:1:27: executing "url" at <.Vars.zone>: map has no entry for key "zone"`, nil},
		{"unknown field", "http", map[string]string{"url": "http://{{.Hostname}}/"}, hosts,
			`host web1:80: param url: template: url:1:9: executing "url" at <.Hostname>: can't evaluate field Hostname in type check.hostData`, nil},
		{"port renders to junk", "tcp", map[string]string{"port": "{{.Vars.zone}}"}, hosts,
			`host web1:80: param port: "dc1" is not a port (must be 1-65535)`, nil},
		{"port var missing", "tcp", map[string]string{"port": "{{.Vars.ssh}}"}, hosts,
			`host web2: param port: template: port:1:7: executing "port" at <.Vars.ssh>: map has no entry for key "ssh"`, nil},
		{"url renders to non-url", "http", map[string]string{"url": "{{.Address}}/health"}, hosts,
			`host web1:80: param url: "web1/health" is not an http:// or https:// URL`, nil},
		{"exec args render", "exec", map[string]string{"name": "x", "args": "{{.Vars.zone}}"}, []inventory.Host{web1}, "", nil},
		{"exec args var missing", "exec", map[string]string{"name": "x", "args": "-z {{.Vars.zone}}"}, hosts,
			`host web2: param args: template: args:1:7: executing "args" at <.Vars.zone>: map has no entry for key "zone"`, nil},
		{"ssh needs no port", "ssh", map[string]string{"name": "df"}, hosts, "", nil},
		{"ssh port var missing", "ssh", map[string]string{"name": "df", "port": "{{.Vars.ssh}}"}, hosts,
			`host web2: param port: template: port:1:7: executing "port" at <.Vars.ssh>: map has no entry for key "ssh"`, nil},
		{"ssh ansible_port junk", "ssh", map[string]string{"name": "df"},
			[]inventory.Host{{Name: "db1", Address: "db1", Vars: map[string]string{"ansible_port": "ssh"}}},
			`host db1: param port: ansible_port: "ssh" is not a port (must be 1-65535)`, nil},
		{"tcp send var missing", "tcp", map[string]string{"send": "HELO {{.Vars.zone}}"}, []inventory.Host{web1, {Name: "x:1", Address: "x", Port: 1}},
			`host x:1: param send: template: send:1:12: executing "send" at <.Vars.zone>: map has no entry for key "zone"`, nil},
		{"http header var missing", "http", map[string]string{"header": "X-Zone: {{.Vars.zone}}"}, hosts,
			`host web2: param header: template: header:1:7: executing "header" at <.Vars.zone>: map has no entry for key "zone"`, nil},
		{"bad param before hosts", "tcp", map[string]string{"timeout": "soon"}, hosts,
			`check: bad param: tcp timeout="soon": want a positive duration such as 5s or 500ms`, ErrBadParam},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.typ, tt.params, tt.hosts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Validate error\n got %v\nwant %s", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if tt.is == ErrBadParam {
				return
			}
			var he *HostError
			if !errors.As(err, &he) || he.Host == "" || he.Param == "" {
				t.Errorf("error %v is not a *HostError naming host and param", err)
			}
		})
	}
}
