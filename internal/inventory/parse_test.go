package inventory

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Host
	}{
		{"name only", "web1\n", []Host{{Name: "web1", Address: "web1"}}},
		{"name and port", "web1:2222", []Host{{Name: "web1:2222", Address: "web1", Port: 2222}}},
		{"ipv4 and port", "10.0.0.7:22", []Host{{Name: "10.0.0.7:22", Address: "10.0.0.7", Port: 22}}},
		{"bracketed ipv6 and port", "[::1]:8080", []Host{{Name: "[::1]:8080", Address: "::1", Port: 8080}}},
		{"bracketed ipv6 without port", "[2001:db8::1]", []Host{{Name: "[2001:db8::1]", Address: "2001:db8::1"}}},
		{"bare ipv6", "::1\n2001:db8::1", []Host{
			{Name: "::1", Address: "::1"},
			{Name: "2001:db8::1", Address: "2001:db8::1"},
		}},
		{"ipv6 with zone", "[fe80::1%eth0]:22", []Host{{Name: "[fe80::1%eth0]:22", Address: "fe80::1%eth0", Port: 22}}},
		{"comments, blanks and whitespace", "# web tier\n\n  web1  \n\tweb2:80 # the other one\n   # indented comment\n", []Host{
			{Name: "web1", Address: "web1"},
			{Name: "web2:80", Address: "web2", Port: 80},
		}},
		{"hash inside a word is not a comment start", "web1 tag=a#b", []Host{
			{Name: "web1", Address: "web1", Vars: map[string]string{"tag": "a#b"}},
		}},
		{"vars", "web1:80 zone=dc1 role=web\tempty= url=http://x/?a=b", []Host{{
			Name: "web1:80", Address: "web1", Port: 80,
			Vars: map[string]string{"zone": "dc1", "role": "web", "empty": "", "url": "http://x/?a=b"},
		}}},
		{"vars then comment", "web1 zone=dc1 # note", []Host{{Name: "web1", Address: "web1", Vars: map[string]string{"zone": "dc1"}}}},
		{"crlf line endings", "web1\r\nweb2:22\r\n", []Host{
			{Name: "web1", Address: "web1"},
			{Name: "web2:22", Address: "web2", Port: 22},
		}},
		{"byte order mark", "\uFEFFweb1", []Host{{Name: "web1", Address: "web1"}}},
		{"port bounds", "a:1\nb:65535", []Host{
			{Name: "a:1", Address: "a", Port: 1},
			{Name: "b:65535", Address: "b", Port: 65535},
		}},
		{"same address on different ports", "web1:80\nweb1:443", []Host{
			{Name: "web1:80", Address: "web1", Port: 80},
			{Name: "web1:443", Address: "web1", Port: 443},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in), "inventory.txt")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
		is      error
	}{
		{"port too big", "web1\n\n# c\n\nweb2\nweb3\nweb4:99999", `inventory.txt:7: invalid port "99999" (must be 1-65535)`, ErrSyntax},
		{"port zero", "web1:0", `inventory.txt:1: invalid port "0" (must be 1-65535)`, ErrSyntax},
		{"port not a number", "web1:http", `inventory.txt:1: invalid port "http" (must be 1-65535)`, ErrSyntax},
		{"port signed", "web1:+80", `inventory.txt:1: invalid port "+80" (must be 1-65535)`, ErrSyntax},
		{"port missing", "web1:", `inventory.txt:1: missing port after ':'; write it as name:port, or drop the ':'`, ErrSyntax},
		{"empty host", ":22", `inventory.txt:1: empty host before ":22"; write it as name:port`, ErrSyntax},
		{"bracket not closed", "[::1:22", `inventory.txt:1: host "[::1:22" has '[' without ']'; write IPv6 with a port as [2001:db8::1]:22`, ErrSyntax},
		{"brackets around a name", "[web1]:22", `inventory.txt:1: host "[web1]:22": "web1" is not an IPv6 address (brackets are only for IPv6)`, ErrSyntax},
		{"junk after bracket", "[::1]x22", `inventory.txt:1: host "[::1]x22": unexpected "x22" after ']'; write [2001:db8::1]:22`, ErrSyntax},
		{"bad port after bracket", "[::1]:0", `inventory.txt:1: invalid port "0" (must be 1-65535)`, ErrSyntax},
		{"too many colons", "a:b:c", `inventory.txt:1: host "a:b:c" is not an IPv6 address; write IPv6 with a port as [2001:db8::1]:22`, ErrSyntax},
		{"bad zone", "fe80::1%a]", `inventory.txt:1: host "fe80::1%a]" is not an IPv6 address; write IPv6 with a port as [2001:db8::1]:22`, ErrSyntax},
		{"slash", "10.0.0.0/24", `inventory.txt:1: host "10.0.0.0/24" contains '/'; write a host name or IP address (ranges and URLs are not supported)`, ErrSyntax},
		{"control character", "we\x00b1", `inventory.txt:1: host "we\x00b1" contains control character or invalid UTF-8 '\x00'`, ErrSyntax},
		{"invalid utf8", "we\xffb1", `inventory.txt:1: host "we\xffb1" contains control character or invalid UTF-8 '�'`, ErrSyntax},
		{"bad character", "web!1", `inventory.txt:1: invalid character '!' in host "web!1"; use only letters, digits, '-', '.' and '_'`, ErrSyntax},
		{"whitespace inside a name", "web 1", `inventory.txt:1: unexpected "1" after the host; extra words must be key=value variables, one host per line`, ErrSyntax},
		{"var first", "zone=dc1 web1", `inventory.txt:1: line starts with variable "zone=dc1"; write the host first, e.g. web1 zone=dc1`, ErrSyntax},
		{"var without name", "web1 =dc1", `inventory.txt:1: invalid variable "=dc1": the name must start with a letter or '_' and contain only letters, digits and '_'`, ErrSyntax},
		{"var name starts with digit", "web1 1zone=dc1", `inventory.txt:1: invalid variable "1zone=dc1": the name must start with a letter or '_' and contain only letters, digits and '_'`, ErrSyntax},
		{"var name with dash", "web1 my-zone=dc1", `inventory.txt:1: invalid variable "my-zone=dc1": the name must start with a letter or '_' and contain only letters, digits and '_'`, ErrSyntax},
		{"var set twice", "web1 zone=a zone=b", `inventory.txt:1: variable "zone" is set twice on this line`, ErrSyntax},
		{"var control character", "web1 zone=a\x01", `inventory.txt:1: variable "zone" contains control character or invalid UTF-8 '\x01'`, ErrSyntax},
		{"duplicate", "web1\nweb2\nweb1", `inventory.txt:3: host "web1" is already listed on line 1; remove one of them, or a check would run twice against it`, ErrDuplicate},
		{"duplicate ignores case", "web1:22\nWEB1:22", `inventory.txt:2: host "WEB1:22" is already listed on line 1; remove one of them, or a check would run twice against it`, ErrDuplicate},
		{"empty", "", `inventory.txt: inventory: no hosts (only blank lines and comments); add one host per line, e.g. web1 or web1:22`, ErrEmpty},
		{"only comments", "# nothing yet\n\n   \n", `inventory.txt: inventory: no hosts (only blank lines and comments); add one host per line, e.g. web1 or web1:22`, ErrEmpty},
		{"line too long", "web1\n" + strings.Repeat("a", maxLineLen+1), `inventory.txt:2: line longer than 64 KiB; write one host per line`, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts, err := Parse(strings.NewReader(tt.in), "inventory.txt")
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", hosts, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error\n got %q\nwant %q", err, tt.wantErr)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}

func TestParseErrorFields(t *testing.T) {
	_, err := Parse(strings.NewReader("web1\nweb1:99999\n"), "hosts")
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *ParseError", err)
	}
	if pe.Source != "hosts" || pe.Line != 2 {
		t.Errorf("ParseError at %s:%d, want hosts:2", pe.Source, pe.Line)
	}
}

func TestParseTooMany(t *testing.T) {
	if testing.Short() {
		t.Skip("parses a million hosts")
	}
	_, err := Parse(&hostLines{n: MaxHosts + 1}, "big.txt")
	want := fmt.Sprintf("big.txt:%d: more than %d hosts; split the inventory into several jobs", MaxHosts+1, MaxHosts)
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrTooMany) {
		t.Errorf("errors.Is(%v, ErrTooMany) = false", err)
	}
}

// hostLines is a reader of n distinct host lines, so the big test needs no
// big file or string.
type hostLines struct {
	n, i int
	buf  []byte
}

func (r *hostLines) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) && r.i < r.n {
		r.buf = fmt.Appendf(r.buf, "h%d\n", r.i)
		r.i++
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()

	t.Run("ok", func(t *testing.T) {
		path := filepath.Join(dir, "hosts.txt")
		if err := os.WriteFile(path, []byte("web1:80 zone=dc1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ParseFile(path)
		if err != nil {
			t.Fatalf("ParseFile: %v", err)
		}
		want := []Host{{Name: "web1:80", Address: "web1", Port: 80, Vars: map[string]string{"zone": "dc1"}}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseFile = %+v, want %+v", got, want)
		}
	})

	t.Run("errors name the file", func(t *testing.T) {
		path := filepath.Join(dir, "bad.txt")
		if err := os.WriteFile(path, []byte("web1:0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ParseFile(path)
		want := path + `:1: invalid port "0" (must be 1-65535)`
		if err == nil || err.Error() != want {
			t.Errorf("ParseFile error = %v, want %q", err, want)
		}
	})

	t.Run("empty", func(t *testing.T) {
		path := filepath.Join(dir, "empty.txt")
		if err := os.WriteFile(path, []byte("# todo\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ParseFile(path)
		if !errors.Is(err, ErrEmpty) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("ParseFile error = %v, want ErrEmpty naming %s", err, path)
		}
	})

	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(dir, "nope.txt")
		_, err := ParseFile(path)
		want := "inventory: file does not exist: " + path + "; check the path, or create it with one host per line"
		if err == nil || err.Error() != want {
			t.Errorf("ParseFile error = %v, want %q", err, want)
		}
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("errors.Is(%v, ErrNotFound) = false", err)
		}
	})
}
