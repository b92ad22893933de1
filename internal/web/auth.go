package web

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
)

// Role is what a token may do.
type Role string

// Roles, from least to most allowed.
const (
	RoleViewer   Role = "viewer"   // may read (as anyone may) and prove who it is
	RoleOperator Role = "operator" // may also submit, cancel, retry and change schedules
)

func (r Role) allows(need Role) bool {
	switch need {
	case RoleViewer:
		return r == RoleViewer || r == RoleOperator
	case RoleOperator:
		return r == RoleOperator
	}
	return false
}

// Token is one line of a tokens file: a name (for logs), a role, and the
// SHA-256 of the token.
type Token struct {
	Name string
	Role Role
	hash [sha256.Size]byte
}

// Tokens is a tokens file as read.
type Tokens struct {
	list []Token
}

var tokenNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// TokensFormat describes the tokens file, for errors and help.
const TokensFormat = "one token per line: NAME ROLE sha256:HEX (ROLE viewer or operator; HEX the SHA-256 of the token); " +
	"blank lines and lines starting with # are ignored; `patrol web token NAME` prints a new token and its line"

// LoadTokens reads a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	return ParseTokens(f, path)
}

// ParseTokens reads a tokens file's lines from r; source names it in errors.
func ParseTokens(r io.Reader, source string) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		bad := func(why string) error {
			return fmt.Errorf("%s line %d: %s; write %s", source, n, why, TokensFormat)
		}
		if len(f) != 3 {
			return nil, bad(fmt.Sprintf("%d fields, want 3", len(f)))
		}
		if !tokenNameRe.MatchString(f[0]) {
			return nil, bad(fmt.Sprintf("name %q: use 1-64 letters, digits, '.', '_', '@' or '-'", f[0]))
		}
		if names[f[0]] {
			return nil, bad(fmt.Sprintf("name %q given twice", f[0]))
		}
		role := Role(f[1])
		if role != RoleViewer && role != RoleOperator {
			return nil, bad(fmt.Sprintf("role %q: use viewer or operator", f[1]))
		}
		hexHash, ok := strings.CutPrefix(f[2], "sha256:")
		sum, err := hex.DecodeString(hexHash)
		if !ok || err != nil || len(sum) != sha256.Size {
			return nil, bad("the hash is not sha256: and 64 hex digits (a token itself must never be stored)")
		}
		tok := Token{Name: f[0], Role: role}
		copy(tok.hash[:], sum)
		t.list = append(t.list, tok)
		names[f[0]] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(t.list) == 0 {
		return nil, fmt.Errorf("%s holds no token: add one with `patrol web token NAME --role operator >> %s`", source, source)
	}
	return t, nil
}

// Len is how many tokens the file holds.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.list)
}

// lookup finds the token whose hash is that of secret. Every entry is
// compared, in constant time, whether or not one matched.
func (t *Tokens) lookup(secret string) (Token, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found Token
	ok := 0
	for _, tok := range t.list {
		if subtle.ConstantTimeCompare(sum[:], tok.hash[:]) == 1 {
			found, ok = tok, 1
		}
	}
	return found, ok == 1
}

// NewToken returns a new random token and the tokens-file line for it.
func NewToken(name string, role Role) (secret, line string, err error) {
	if !tokenNameRe.MatchString(name) {
		return "", "", fmt.Errorf("token name %q: use 1-64 letters, digits, '.', '_', '@' or '-'", name)
	}
	if role != RoleViewer && role != RoleOperator {
		return "", "", fmt.Errorf("role %q: use viewer or operator", role)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	secret = "ptk_" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	return secret, fmt.Sprintf("%s %s sha256:%s", name, role, hex.EncodeToString(sum[:])), nil
}

// Auth errors, each answered with its status and what to do.
var (
	errNoToken    = errors.New("this needs a token: send `Authorization: Bearer TOKEN` (in the console, the token button)")
	errBadToken   = errors.New("the token is not known here: check it, or ask for one (`patrol web token NAME` prints a new one and its tokens-file line)")
	errBadAuth    = errors.New("malformed Authorization header: send `Authorization: Bearer TOKEN`")
	errNoWrites   = errors.New("writes are turned off: this server has no tokens file; create one with `patrol web token NAME --role operator >> tokens.txt` and restart `patrol web` with --tokens tokens.txt")
	errNotAllowed = errors.New("this token's role may not do this: submit, cancel, retry and changes to schedules need an operator token")
)

// caller is who made a request: a token's name and role, or anonymous.
type caller struct {
	name string
	role Role
}

// authenticate reads the bearer token, if any. A token that is sent must
// be known (401), whatever the route.
func (s *Server) authenticate(r *http.Request) (caller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return caller{}, nil
	}
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return caller{}, errBadAuth
	}
	if s.tokens.Len() == 0 {
		return caller{}, errBadToken
	}
	tok, ok := s.tokens.lookup(strings.TrimSpace(secret))
	if !ok {
		return caller{}, errBadToken
	}
	return caller{name: tok.Name, role: tok.Role}, nil
}

// authorize says why c may not do what needs role need, with its status.
func (s *Server) authorize(c caller, need Role) *apiError {
	if need == "" {
		return nil
	}
	if need == RoleOperator && s.tokens.Len() == 0 {
		return &apiError{http.StatusForbidden, errNoWrites.Error()}
	}
	if c.role == "" {
		return &apiError{http.StatusUnauthorized, errNoToken.Error()}
	}
	if !c.role.allows(need) {
		return &apiError{http.StatusForbidden, errNotAllowed.Error()}
	}
	return nil
}
