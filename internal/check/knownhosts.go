package check

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyError says why a host's SSH key was refused, and what to do.
type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// knownHosts checks host keys against one known_hosts file, and appends to
// it for host_key_check=accept-new. It re-reads the file when its size or
// modification time changes, so keys added by another check, another
// worker or an operator are seen on the next connection.
type knownHosts struct {
	path string

	mu    sync.Mutex // guards stamp and db
	stamp fileStamp
	db    ssh.HostKeyCallback

	addMu sync.Mutex // serialises appends within this process; flock serialises processes
}

// fileStamp is what tells a changed file from the one last read.
type fileStamp struct {
	exists bool
	size   int64
	mod    time.Time
}

func (a fileStamp) same(b fileStamp) bool {
	return a.exists == b.exists && a.size == b.size && a.mod.Equal(b.mod)
}

// probeKey is a key no host has. Checking it against known_hosts lists the
// keys a host is known by (see algorithms).
var probeKey, _ = ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))

// load returns the checker for the file as it is now. A missing file knows
// no host.
func (k *knownHosts) load() (ssh.HostKeyCallback, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var stamp fileStamp
	fi, err := os.Stat(k.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		stamp = fileStamp{exists: true, size: fi.Size(), mod: fi.ModTime()}
	}
	if k.db != nil && stamp.same(k.stamp) {
		return k.db, nil
	}
	files := []string{}
	if stamp.exists {
		files = append(files, k.path)
	}
	db, err := knownhosts.New(files...)
	if err != nil {
		return nil, err
	}
	k.db, k.stamp = db, stamp
	return db, nil
}

// algorithms lists the host key algorithms of the keys known for the host,
// to offer the server only those: a server that also has a key of another
// type would otherwise present it, and a known host would look changed.
// Nil for an unknown host (any algorithm).
func (k *knownHosts) algorithms(hostport string, remote net.Addr) []string {
	db, err := k.load()
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := db(hostport, remote, probeKey); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	for _, w := range ke.Want {
		if t := w.Key.Type(); t == ssh.KeyAlgoRSA {
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		} else {
			algos = append(algos, t)
		}
	}
	slices.Sort(algos)
	return slices.Compact(algos)
}

// callback returns the HostKeyCallback for one connection. It stores the
// key's fingerprint in seen, whatever the verdict. A changed key is
// refused even with acceptNew.
func (k *knownHosts) callback(acceptNew bool, seen *atomic.Value) ssh.HostKeyCallback {
	return func(hostport string, remote net.Addr, key ssh.PublicKey) error {
		seen.Store(ssh.FingerprintSHA256(key)) // the transport calls this from its own goroutine
		db, err := k.load()
		if err != nil {
			return &hostKeyError{fmt.Sprintf("cannot read known_hosts: %v; fix the file or the worker's --known-hosts", err)}
		}
		err = k.verdict(db, hostport, remote, key)
		var unknown *unknownHostError
		if errors.As(err, &unknown) && acceptNew {
			return k.add(hostport, remote, key)
		}
		return err
	}
}

// unknownHostError is a host that known_hosts does not list.
type unknownHostError struct{ hostKeyError }

// verdict checks key against db, turning knownhosts errors into messages
// that say what to do.
func (k *knownHosts) verdict(db ssh.HostKeyCallback, hostport string, remote net.Addr, key ssh.PublicKey) error {
	err := db(hostport, remote, key)
	var (
		ke *knownhosts.KeyError
		re *knownhosts.RevokedError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return &hostKeyError{fmt.Sprintf("host key %s of %s is revoked in %s:%d",
			ssh.FingerprintSHA256(key), hostport, re.Revoked.Filename, re.Revoked.Line)}
	case errors.As(err, &ke) && len(ke.Want) > 0:
		w := ke.Want[0]
		return &hostKeyError{fmt.Sprintf("host key mismatch for %s: possible MITM: it presented %s %s, "+
			"%s:%d has %s %s; if the host was really reinstalled, fix that line of known_hosts",
			hostport, key.Type(), ssh.FingerprintSHA256(key), w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key))}
	case errors.As(err, &ke):
		host, port, _ := net.SplitHostPort(hostport)
		return &unknownHostError{hostKeyError{fmt.Sprintf("host %s is not in %s: check its key (%s %s) and add it "+
			"(ssh-keyscan -p %s %s >> %s), or pass --param host_key_check=accept-new",
			hostport, k.path, key.Type(), ssh.FingerprintSHA256(key), port, host, k.path)}}
	default:
		return &hostKeyError{fmt.Sprintf("checking host key of %s: %v", hostport, err)}
	}
}

// add appends the host's key to the file, unless another writer added the
// host meanwhile: then the key must match what it wrote.
func (k *knownHosts) add(hostport string, remote net.Addr, key ssh.PublicKey) error {
	k.addMu.Lock()
	defer k.addMu.Unlock()
	fail := func(err error) error {
		return &hostKeyError{fmt.Sprintf("host_key_check=accept-new: cannot add %s to %s: %v", hostport, k.path, err)}
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(k.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	unlock, err := lockFile(f)
	if err != nil {
		return fail(err)
	}
	defer unlock()

	db, err := knownhosts.New(k.path) // under the lock, as it is now
	if err != nil {
		return fail(err)
	}
	var unknown *unknownHostError
	if err := k.verdict(db, hostport, remote, key); !errors.As(err, &unknown) {
		return err // nil: added meanwhile with this key; else refused
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' || err != nil && err != io.EOF {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fail(err)
	}
	return nil
}
