package check

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/patrol-dev/patrol/internal/inventory"
)

const sshdPath = "/usr/sbin/sshd"

// sshServer is a real OpenSSH server on loopback, with the client key and
// known_hosts file a worker would use to reach it.
type sshServer struct {
	host     inventory.Host // 127.0.0.1 and the server's port
	addr     string         // host:port
	ed25519  ssh.PublicKey  // the server's host keys
	ecdsa    ssh.PublicKey
	opts     Options // SSHKeys: the client key; KnownHosts: a file listing the ed25519 host key
	clientPK crypto.Signer
	log      func() string // what sshd has logged so far
}

// startSSHD starts /usr/sbin/sshd -D for the test, and stops it and waits
// for it at cleanup. It skips the test when sshd is not installed.
func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("ssh tests need OpenSSH's server at %s: apt-get install -y openssh-server (%v)", sshdPath, err)
	}
	dir := t.TempDir()
	s := &sshServer{}

	// Keys: two host keys, so that a known_hosts listing only one proves
	// the check asks for the right algorithm; one client key.
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, clientKey, _ := ed25519.GenerateKey(rand.Reader)
	writeKey(t, filepath.Join(dir, "host_ed25519"), edKey)
	writeKey(t, filepath.Join(dir, "host_ecdsa"), ecKey)
	writeKey(t, filepath.Join(dir, "id_ed25519"), clientKey)
	s.ed25519, _ = ssh.NewPublicKey(edKey.Public())
	s.ecdsa, _ = ssh.NewPublicKey(ecKey.Public())
	s.clientPK = clientKey
	clientPub, _ := ssh.NewPublicKey(clientKey.Public())
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(clientPub)))

	port := freePort(t)
	config := strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_ed25519"),
		"HostKey " + filepath.Join(dir, "host_ecdsa"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"UsePAM no",
		"PidFile none",
		"LogLevel VERBOSE",
	}, "\n") + "\n"
	writeFile(t, filepath.Join(dir, "sshd_config"), config)
	if os.Geteuid() == 0 {
		// sshd running as root wants its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(sshdPath, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"), "-p", strconv.Itoa(port))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		logMu  sync.Mutex
		log    strings.Builder
		ready  = make(chan struct{})
		logged = make(chan struct{})
	)
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.HasPrefix(sc.Text(), "Server listening on 127.0.0.1 port "+strconv.Itoa(port)) {
				once()
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait() // closes stderr, which ends the log reader
		<-logged
		if t.Failed() {
			logMu.Lock()
			t.Logf("sshd log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	s.log = func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return log.String()
	}
	select {
	case <-ready:
	case <-logged:
		t.Fatalf("sshd exited before listening:\n%s", log.String())
	case <-time.After(10 * time.Second):
		t.Fatal("sshd did not start listening in 10s")
	}

	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.host = inventory.Host{Name: "lo", Address: "127.0.0.1", Port: port}
	s.opts = Options{
		SSHKeys:    []string{filepath.Join(dir, "id_ed25519")},
		KnownHosts: filepath.Join(dir, "known_hosts"),
	}
	s.trust(t, s.ed25519)
	return s
}

// waitLog waits up to 5s for sshd to log a line containing substr.
func (s *sshServer) waitLog(substr string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(s.log(), substr) {
			return true
		}
	}
	return false
}

// trust writes the known_hosts file to hold key, and only key, for the server.
func (s *sshServer) trust(t *testing.T, key ssh.PublicKey) {
	t.Helper()
	writeFile(t, s.opts.KnownHosts, "# test\n"+knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, key)+"\n")
}

// with returns the server's options with an allowlist.
func (s *sshServer) with(allow map[string]string) Options {
	o := s.opts
	o.SSH = allow
	return o
}

func writeKey(t *testing.T, path string, key crypto.PrivateKey) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// freePort returns a loopback port nothing listens on, for a server that
// cannot be handed a listener: one the kernel picked a moment ago and that
// is free again. Another process could take it before the server binds it;
// the kernel's choice of ephemeral ports makes that rare.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestSSH(t *testing.T) {
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "") // the worker's keys only
	allow := map[string]string{
		"true":   "true",
		"disk":   "echo 'DISK CRITICAL - / is 97% full' >&2; exit 2",
		"printf": "printf '[%s]\\n'",
		"env":    `echo "user=$(id -un)"`,
		"die":    "echo dying; kill -TERM $$",
	}
	fp := ssh.FingerprintSHA256(s.ed25519)
	who := "root@" + s.addr
	if u := currentUser(t); u != "root" {
		who = u + "@" + s.addr
	}

	tests := []struct {
		name    string
		params  map[string]string
		host    inventory.Host
		status  Status
		message string
		details map[string]string
	}{
		{"exit 0", map[string]string{"name": "true"}, s.host, StatusOK, "ssh " + who + " true: exit 0 (OK) in ",
			map[string]string{"exit_code": "0", "output": "", "host_key": fp}},
		{"exit 2 with the last line", map[string]string{"name": "disk", "nagios": "false"}, s.host, StatusFail,
			"ssh " + who + " disk: exit status 2: DISK CRITICAL - / is 97% full",
			map[string]string{"exit_code": "2", "output": "DISK CRITICAL - / is 97% full\n", "host_key": fp}},
		{"exit 2 is a plugin's critical", map[string]string{"name": "disk"}, s.host, StatusFail,
			"ssh " + who + " disk: DISK CRITICAL - / is 97% full",
			map[string]string{"exit_code": "2", "output": "DISK CRITICAL - / is 97% full\n", "host_key": fp}},
		{"args are quoted for the remote shell", map[string]string{"name": "printf", "args": `{{.Vars.evil}} plain {{.Port}}`},
			withVars(s.host, "evil", `it's $(id); rm -rf "*" ; `), StatusOK, "ssh " + who + " printf: [it's $(id)",
			map[string]string{"exit_code": "0", "output": "[it's $(id); rm -rf \"*\" ; ]\n[plain]\n[" + strconv.Itoa(s.host.Port) + "]\n", "host_key": fp}},
		{"ansible_user picks the remote user", map[string]string{"name": "env"}, withVars(s.host, "ansible_user", currentUser(t)),
			StatusOK, "ssh " + who + " env: user=", map[string]string{"exit_code": "0", "output": "user=" + currentUser(t) + "\n", "host_key": fp}},
		{"killed by a signal", map[string]string{"name": "die"}, s.host, StatusFail, "ssh " + who + " die: killed by signal SIGTERM: dying",
			map[string]string{"signal": "SIGTERM", "output": "dying\n", "host_key": fp}},
		{"unknown user", map[string]string{"name": "true"}, withVars(s.host, "user", "nosuchuser"), StatusError,
			"ssh nosuchuser@" + s.addr + ": authentication failed: the host accepted none of the worker's 1 keys; add one to ~nosuchuser/.ssh/authorized_keys on the host, or set ansible_user", nil},
		{"ansible_port wins over the inventory port", map[string]string{"name": "true"},
			withVars(inventory.Host{Name: "lo:1", Address: "127.0.0.1", Port: 1}, "ansible_port", strconv.Itoa(s.host.Port)),
			StatusOK, "ssh " + who + " true: exit 0", nil},
		{"not allowed", map[string]string{"name": "reboot"}, s.host, StatusError,
			`ssh command "reboot" is not in this worker's allowlist; add --allow-ssh reboot='COMMAND' to the worker, or run the job where it is allowed`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustNewWith(t, "ssh", tt.params, s.with(allow)).Run(context.Background(), tt.host)
			expect(t, res, tt.status, tt.message)
			if tt.details != nil && !equalMaps(res.Details, tt.details) {
				t.Errorf("Details = %q\nwant %q", res.Details, tt.details)
			}
		})
	}

	t.Run("stdout and stderr both kept", func(t *testing.T) {
		// sshd forwards the two streams separately: their order may change.
		opts := s.with(map[string]string{"both": "echo out; echo err >&2"})
		res := mustNewWith(t, "ssh", map[string]string{"name": "both", "nagios": "false"}, opts).Run(context.Background(), s.host)
		expect(t, res, StatusOK, "ssh "+who+" both: exit 0")
		if out := res.Details["output"]; out != "out\nerr\n" && out != "err\nout\n" {
			t.Errorf("output = %q, want out and err lines", out)
		}
	})

	t.Run("refused", func(t *testing.T) {
		closed := hostAt(t, closedPort(t))
		res := mustNewWith(t, "ssh", map[string]string{"name": "true"}, s.with(allow)).Run(context.Background(), closed)
		expect(t, res, StatusFail, "ssh "+strings.Split(who, "@")[0]+"@"+closed.Name+": connect: connection refused")
	})
}

func currentUser(t *testing.T) string {
	t.Helper()
	c := mustNew(t, "ssh", map[string]string{"name": "x"}).(*sshCheck)
	return c.user
}

func TestSSHOutputCap(t *testing.T) {
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	opts := s.with(map[string]string{"loud": `head -c 1048576 /dev/zero | tr '\0' x; echo; echo the end`})
	opts.OutputCap = 1000
	res := mustNewWith(t, "ssh", map[string]string{"name": "loud"}, opts).Run(context.Background(), s.host)
	expect(t, res, StatusOK, "ssh ")
	out := res.Details["output"]
	marker := "[patrol: first " + strconv.Itoa(1<<20+1+8-1000) + " bytes of output dropped, last 1000 kept]\n"
	if !strings.HasPrefix(out, marker) || !strings.HasSuffix(out, "xxx\nthe end\n") || len(out) != len(marker)+1000 {
		t.Errorf("output (%d bytes) starts %q, ends %q; want %q, 1000 bytes, ending with the end", len(out), cut(out, 100), out[max(0, len(out)-30):], marker)
	}
}

// TestSSHCancel: the check sends KILL to the remote command, not only
// drops the connection. OpenSSH delivers it for ordinary users; for root it
// refuses (root sessions skip privilege separation), which its log shows.
func TestSSHCancel(t *testing.T) {
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	// sshd runs on this machine: the remote shell writes its pid to a
	// local fifo, and is a process here.
	fifo := filepath.Join(t.TempDir(), "pid")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	opts := s.with(map[string]string{"hang": `sh -c 'echo $$ > "$1"; exec sleep 1000' hang`})
	c := mustNewWith(t, "ssh", map[string]string{"name": "hang", "args": fifo}, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Result, 1)
	go func() { done <- c.Run(ctx, s.host) }()

	var pid int
	if _, err := fmt.Sscan(readFifo(t, fifo, done), &pid); err != nil {
		t.Fatalf("fifo: %v: want the remote command's pid", err)
	}
	cancel()
	res := <-done
	expect(t, res, StatusError, "ssh ")
	if !strings.HasSuffix(res.Message, ": cancelled; sent KILL to the remote command") {
		t.Errorf("Message = %q, want cancelled and KILL sent", res.Message)
	}
	if currentUser(t) == "root" {
		syscall.Kill(pid, syscall.SIGKILL)
		const refused = "session_signal_req: session signalling requires privilege separation"
		if !s.waitLog(refused) {
			t.Errorf("sshd did not log %q: was the signal sent?", refused)
		}
		return
	}
	if !waitProcessGone(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("remote command %d still ran 5s after the check was cancelled", pid)
	}
}

// TestSSHTimeout: the timeout param bounds the remote command.
func TestSSHTimeout(t *testing.T) {
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	opts := s.with(map[string]string{"slow": "sleep 5"}) // ends by itself where KILL is refused (root)
	res := mustNewWith(t, "ssh", map[string]string{"name": "slow", "timeout": "2s"}, opts).Run(context.Background(), s.host)
	expect(t, res, StatusError, "ssh ")
	if !strings.Contains(res.Message, ": timed out after ") || !strings.HasSuffix(res.Message, "; sent KILL to the remote command") &&
		!strings.Contains(res.Message, "handshake") {
		t.Errorf("Message = %q, want a timeout", res.Message)
	}
}

func TestSSHCancelled(t *testing.T) {
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	res := mustNewWith(t, "ssh", map[string]string{"name": "true"}, s.with(map[string]string{"true": "true"})).Run(cancelled(), s.host)
	expect(t, res, StatusError, "ssh true: cancelled")
}

func TestSSHHostKeys(t *testing.T) {
	s := startSSHD(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	allow := map[string]string{"true": "true"}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(otherKey.Public())
	strict := map[string]string{"name": "true"}
	acceptNew := map[string]string{"name": "true", "host_key_check": "accept-new"}
	run := func(t *testing.T, params map[string]string) Result {
		t.Helper()
		return mustNewWith(t, "ssh", params, s.with(allow)).Run(context.Background(), s.host)
	}
	addr := s.addr

	t.Run("known by its ecdsa key only", func(t *testing.T) {
		s.trust(t, s.ecdsa)
		res := run(t, strict)
		expect(t, res, StatusOK, "ssh ")
		if res.Details["host_key"] != ssh.FingerprintSHA256(s.ecdsa) {
			t.Errorf("host_key = %s, want the ecdsa key %s", res.Details["host_key"], ssh.FingerprintSHA256(s.ecdsa))
		}
	})

	for name, params := range map[string]map[string]string{"strict": strict, "accept-new": acceptNew} {
		t.Run("changed key refused, "+name, func(t *testing.T) {
			s.trust(t, other)
			before := readFile(t, s.opts.KnownHosts)
			res := run(t, params)
			expect(t, res, StatusError, "ssh ")
			if want := ": host key mismatch for " + addr + ": possible MITM: it presented ssh-ed25519 " + ssh.FingerprintSHA256(s.ed25519) +
				", " + s.opts.KnownHosts + ":2 has ssh-ed25519 " + ssh.FingerprintSHA256(other) +
				"; if the host was really reinstalled, fix that line of known_hosts"; !strings.HasSuffix(res.Message, want) {
				t.Errorf("Message = %q\nwant suffix %q", res.Message, want)
			}
			if after := readFile(t, s.opts.KnownHosts); after != before {
				t.Errorf("known_hosts changed:\n%s\nwas:\n%s", after, before)
			}
		})
	}

	t.Run("unknown host refused when strict", func(t *testing.T) {
		writeFile(t, s.opts.KnownHosts, "")
		res := run(t, strict)
		expect(t, res, StatusError, "ssh ")
		if want := ": host " + addr + " is not in " + s.opts.KnownHosts + ": check its key ("; !strings.Contains(res.Message, want) ||
			!strings.HasSuffix(res.Message, "(ssh-keyscan -p "+strconv.Itoa(s.host.Port)+" 127.0.0.1 >> "+s.opts.KnownHosts+"), or pass --param host_key_check=accept-new") {
			t.Errorf("Message = %q, want it to name the host, the file and the fixes", res.Message)
		}
		if readFile(t, s.opts.KnownHosts) != "" {
			t.Error("strict check wrote to known_hosts")
		}
	})

	t.Run("accept-new adds an unknown host, then it is known", func(t *testing.T) {
		s.opts.KnownHosts = filepath.Join(t.TempDir(), "new", "known_hosts") // neither file nor directory exists
		writeFileNoNewline := "[127.0.0.2]:22 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))
		os.MkdirAll(filepath.Dir(s.opts.KnownHosts), 0o700)
		writeFile(t, s.opts.KnownHosts, writeFileNoNewline)

		res := run(t, acceptNew)
		expect(t, res, StatusOK, "ssh ")
		got := readFile(t, s.opts.KnownHosts)
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != 2 || lines[0] != writeFileNoNewline || !strings.HasPrefix(lines[1], knownhosts.Normalize(addr)+" ") {
			t.Fatalf("known_hosts after accept-new:\n%s", got)
		}
		added, err := knownhosts.New(s.opts.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := ssh.ParsePublicKey(mustParseAuthorized(t, strings.SplitN(lines[1], " ", 2)[1]).Marshal())
		if err := added(addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.host.Port}, key); err != nil {
			t.Errorf("the added line does not verify the host: %v", err)
		}
		expect(t, run(t, strict), StatusOK, "ssh ") // now known
		if again := readFile(t, s.opts.KnownHosts); again != got {
			t.Errorf("known_hosts changed again:\n%s", again)
		}
	})

	t.Run("accept-new from many checks at once adds the host once", func(t *testing.T) {
		s.opts.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		var wg sync.WaitGroup
		results := make([]Result, 8)
		for i := range results {
			c := mustNewWith(t, "ssh", acceptNew, s.with(allow)) // separate checks: the file lock, not one mutex, serialises them
			wg.Go(func() { results[i] = c.Run(context.Background(), s.host) })
		}
		wg.Wait()
		for _, res := range results {
			expect(t, res, StatusOK, "ssh ")
		}
		if n := strings.Count(readFile(t, s.opts.KnownHosts), "\n"); n != 1 {
			t.Errorf("known_hosts has %d lines, want 1:\n%s", n, readFile(t, s.opts.KnownHosts))
		}
	})
}

func mustParseAuthorized(t *testing.T, line string) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSSHAgent logs in with a key held by an agent at SSH_AUTH_SOCK.
func TestSSHAgent(t *testing.T) {
	s := startSSHD(t)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: s.clientPK}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				agent.ServeAgent(keyring, conn) // returns when the check closes its end
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	t.Setenv("SSH_AUTH_SOCK", sock)

	opts := s.with(map[string]string{"true": "true"})
	opts.SSHKeys = nil
	expect(t, mustNewWith(t, "ssh", map[string]string{"name": "true"}, opts).Run(context.Background(), s.host), StatusOK, "ssh ")

	t.Setenv("SSH_AUTH_SOCK", "")
	res := mustNewWith(t, "ssh", map[string]string{"name": "true"}, opts).Run(context.Background(), s.host)
	expect(t, res, StatusError, "ssh ")
	if !strings.HasSuffix(res.Message, ": no SSH key to log in with: give the worker --ssh-key FILE, or run it with SSH_AUTH_SOCK set to an agent holding a key") {
		t.Errorf("Message = %q", res.Message)
	}
}

func TestSSHKeyFiles(t *testing.T) {
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKeyWithPassphrase(key, "", []byte("secret"))
	locked := filepath.Join(dir, "locked")
	writeFile(t, locked, string(pem.EncodeToMemory(block)))
	junk := filepath.Join(dir, "junk")
	writeFile(t, junk, "not a key")

	tests := []struct {
		path string
		want string
	}{
		{locked, "check: unusable ssh key " + locked + ": it is protected by a passphrase; load it into an ssh-agent and give the worker SSH_AUTH_SOCK instead"},
		{junk, "check: unusable ssh key " + junk + ": ssh: no key found"},
		{filepath.Join(dir, "missing"), "check: unusable ssh key: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
	}
	for _, tt := range tests {
		_, err := NewWith("ssh", map[string]string{"name": "x"}, Options{SSHKeys: []string{tt.path}})
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrSSHKey) {
			t.Errorf("NewWith with key %s: %v\nwant %s", filepath.Base(tt.path), err, tt.want)
		}
	}
	// Other check types do not read keys.
	if _, err := NewWith("tcp", nil, Options{SSHKeys: []string{junk}}); err != nil {
		t.Errorf("tcp with a bad ssh key: %v", err)
	}
}

// TestShellQuote runs the quoted words through a real shell.
func TestShellQuote(t *testing.T) {
	words := []string{"", "plain", "it's", `"double"`, "$(id) `id` $HOME", "a\nb", "'", "''", `\`, "*", "; rm -rf /"}
	line := "printf '%s\\0'"
	for _, w := range words {
		line += " " + shellQuote(w)
	}
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if strings.Join(got, "|") != strings.Join(words, "|") || len(got) != len(words) {
		t.Errorf("shell saw %q, want %q", got, words)
	}
}
