package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// script writes an executable /bin/sh script to a temporary directory and
// returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func skipUnlessLinux(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("exec checks run on Linux workers only")
	}
}

func mustNewWith(t *testing.T, typ string, params map[string]string, opts Options) Check {
	t.Helper()
	c, err := NewWith(typ, params, opts)
	if err != nil {
		t.Fatalf("NewWith(%q, %v): %v", typ, params, err)
	}
	return c
}

func TestExec(t *testing.T) {
	skipUnlessLinux(t)
	t.Setenv("PATROL_ENDPOINTS", "the worker's own setting") // must not reach the program
	notExecutable := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(notExecutable, []byte("echo hi\n"), 0o644)
	allow := map[string][]string{
		"true":      {"/bin/true"},
		"false":     {"/bin/false"},
		"disk":      {script(t, `echo "checking $1"; echo "DISK CRITICAL - / is 97% full" >&2; exit 2`), "--warn=80"},
		"args":      {script(t, `for a in "$@"; do printf '[%s]\n' "$a"; done`), "fixed arg"},
		"env":       {script(t, `env | grep '^PATROL_' | sort`)},
		"quiet":     {script(t, "exit 7")},
		"signal":    {script(t, `echo about to die; kill -TERM $$`)},
		"slow":      {script(t, "echo started; sleep 1000")},
		"missing":   {"/nonexistent/check_thing"},
		"notexec":   {notExecutable},
		"empty":     {},
		"multiline": {script(t, `printf 'first\nsecond \033[31mred\033[0m\n\n  \n'; exit 1`)},
	}
	web1 := inventory.Host{Name: "web1:8080", Address: "127.0.0.1", Port: 8080,
		Vars: map[string]string{"zone": "dc 1", "mount-point": "/var/lib", "my.var": "x=y"}}

	tests := []struct {
		name    string
		params  map[string]string
		status  Status
		message string
		details map[string]string // checked for equality when not nil
	}{
		{"exit 0", map[string]string{"name": "true"}, StatusOK, "exec true: exit 0 (OK) in ",
			map[string]string{"exit_code": "0", "output": ""}},
		{"exit 1 is a plugin's warning", map[string]string{"name": "false"}, StatusWarn, "exec false: exit 1 (WARNING) in ",
			map[string]string{"exit_code": "1", "output": ""}},
		{"exit 1, not a plugin", map[string]string{"name": "false", "nagios": "false"}, StatusFail, "exec false: exit status 1",
			map[string]string{"exit_code": "1", "output": ""}},
		{"a plugin's first line is the message", map[string]string{"name": "disk", "args": "{{.Address}}"}, StatusFail,
			"exec disk: checking --warn=80",
			map[string]string{"exit_code": "2", "output": "checking --warn=80\nDISK CRITICAL - / is 97% full\n"}},
		{"otherwise the last line is", map[string]string{"name": "disk", "args": "{{.Address}}", "nagios": "false"}, StatusFail,
			"exec disk: exit status 2: DISK CRITICAL - / is 97% full",
			map[string]string{"exit_code": "2", "output": "checking --warn=80\nDISK CRITICAL - / is 97% full\n"}},
		{"last non-blank line, made printable", map[string]string{"name": "multiline", "nagios": "false"}, StatusFail,
			"exec multiline: exit status 1: second [31mred [0m", nil},
		{"no output", map[string]string{"name": "quiet", "nagios": "false"}, StatusFail, "exec quiet: exit status 7",
			map[string]string{"exit_code": "7", "output": ""}},
		{"an exit status no plugin state", map[string]string{"name": "quiet"}, StatusFail, "exec quiet: exit status 7, which is no plugin state",
			map[string]string{"exit_code": "7", "output": ""}},
		{"args: one per word, no shell", map[string]string{"name": "args",
			"args": `{{.Vars.zone}}  $HOME;* '{{index .Vars "mount-point"}}' {{.Port}}`}, StatusOK, "exec args: [fixed arg]",
			map[string]string{"exit_code": "0", "output": "[fixed arg]\n[dc 1]\n[$HOME;*]\n['/var/lib']\n[8080]\n"}},
		{"environment", map[string]string{"name": "env", "nagios": "false"}, StatusOK, "exec env: exit 0",
			map[string]string{"exit_code": "0", "output": "PATROL_ADDRESS=127.0.0.1\nPATROL_HOST=web1:8080\nPATROL_PORT=8080\n" +
				"PATROL_VAR_MOUNT_POINT=/var/lib\nPATROL_VAR_MY_VAR=x=y\nPATROL_VAR_ZONE=dc 1\n"}},
		{"killed by a signal", map[string]string{"name": "signal"}, StatusFail, "exec signal: killed by signal terminated: about to die",
			map[string]string{"signal": "terminated", "output": "about to die\n"}},
		{"timeout", map[string]string{"name": "slow", "timeout": "1s"}, StatusError,
			"exec slow: timed out after ", map[string]string{"output": "started\n"}},
		{"not allowed", map[string]string{"name": "rm"}, StatusError,
			`exec command "rm" is not in this worker's allowlist; add --allow-exec rm=/path/to/program to the worker, or run the job where it is allowed`, nil},
		{"program missing", map[string]string{"name": "missing"}, StatusError,
			"exec missing: cannot start /nonexistent/check_thing: no such file or directory", nil},
		{"not executable", map[string]string{"name": "notexec"}, StatusError,
			"exec notexec: cannot start " + notExecutable + ": permission denied", nil},
		{"empty argv", map[string]string{"name": "empty"}, StatusError,
			`exec command "empty" has an empty argv in this worker's allowlist; fix its --allow-exec`, nil},
		{"args do not render", map[string]string{"name": "true", "args": "{{.Vars.rack}}"}, StatusError,
			`host web1:8080: param args: template: args:1:7: executing "args" at <.Vars.rack>: map has no entry for key "rack"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustNewWith(t, "exec", tt.params, Options{Exec: allow}).Run(context.Background(), web1)
			expect(t, res, tt.status, tt.message)
			if tt.details != nil && !equalMaps(res.Details, tt.details) {
				t.Errorf("Details = %q\nwant %q", res.Details, tt.details)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestExecNewWithoutOptions: a check built with New, as submit does, runs
// but finds no command allowed.
func TestExecNewWithoutOptions(t *testing.T) {
	res := mustNew(t, "exec", map[string]string{"name": "true"}).Run(context.Background(), inventory.Host{Name: "h"})
	expect(t, res, StatusError, `exec command "true" is not in this worker's allowlist`)
}

// TestExecOutputCap: a program printing 1 MiB leaves its last OutputCap
// bytes, after a marker saying how much was dropped.
func TestExecOutputCap(t *testing.T) {
	skipUnlessLinux(t)
	loud := script(t, `i=0; while [ $i -lt 16384 ]; do printf '%063d\n' $i; i=$((i+1)); done; echo "the end" >&2; exit 1`)
	for _, cap := range []int{0, 1000} { // 0: the default, 64 KiB
		t.Run(strconv.Itoa(cap), func(t *testing.T) {
			c := mustNewWith(t, "exec", map[string]string{"name": "loud", "nagios": "false"}, Options{Exec: map[string][]string{"loud": {loud}}, OutputCap: cap})
			res := c.Run(context.Background(), inventory.Host{Name: "h"})
			expect(t, res, StatusFail, "exec loud: exit status 1: the end")
			kept := cap
			if cap == 0 {
				kept = DefaultOutputCap
			}
			total := 16384*64 + len("the end\n")
			marker := "[patrol: first " + strconv.Itoa(total-kept) + " bytes of output dropped, last " + strconv.Itoa(kept) + " kept]\n"
			out := res.Details["output"]
			if !strings.HasPrefix(out, marker) || !strings.HasSuffix(out, "000000000000000000000000000000000000000000000000000000000016383\nthe end\n") {
				t.Errorf("output starts %q, ends %q; want marker %q and the last lines", cut(out, 100), out[max(0, len(out)-100):], marker)
			}
			if len(out) != len(marker)+kept {
				t.Errorf("len(output) = %d, want %d", len(out), len(marker)+kept)
			}
		})
	}
}

// TestExecKillsProcessGroup: a program that started a background child
// leaves nothing running, whether it is cancelled, times out or exits.
func TestExecKillsProcessGroup(t *testing.T) {
	skipUnlessLinux(t)
	tests := []struct {
		name    string
		body    string // writes "$$ $!" (group id, child) to the fifo in $1
		timeout string
		cancel  bool
		status  Status
		message string
	}{
		{"cancelled", `sleep 1000 & echo "$$ $!" > "$1"; wait`, "1h", true, StatusError, "exec spawner: cancelled; process group killed"},
		{"timeout", `sleep 1000 & echo "$$ $!" > "$1"; wait`, "2s", false, StatusError, "exec spawner: timed out after "},
		{"exits, leaving a child holding its stdout", `sleep 1000 & echo "$$ $!" > "$1"; exit 0`, "1h", false, StatusOK, "exec spawner: exit 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "pids")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			opts := Options{Exec: map[string][]string{"spawner": {script(t, tt.body), fifo}}}
			c := mustNewWith(t, "exec", map[string]string{"name": "spawner", "timeout": tt.timeout}, opts)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan Result, 1)
			go func() { done <- c.Run(ctx, inventory.Host{Name: "h"}) }()

			line := readFifo(t, fifo, done)
			var pgid, child int
			if _, err := fmt.Sscan(line, &pgid, &child); err != nil {
				t.Fatalf("script wrote %q: %v", line, err)
			}
			if tt.cancel {
				cancel()
			}
			start := time.Now()
			res := <-done
			expect(t, res, tt.status, tt.message)
			if waited := time.Since(start); waited > 5*time.Second {
				t.Errorf("Run returned %v after the script's child started; the child's open stdout held it", waited)
			}
			if live := waitGroupGone(t, pgid); len(live) > 0 {
				t.Errorf("process group %d still has live processes %v (the child was %d)", pgid, live, child)
			}
		})
	}
}

// readFifo returns what a program running under a check writes to fifo.
// It fails the test if the check ends before its program wrote: a reader
// of a fifo nobody opens would wait forever. done must have room for one
// result: one taken while the program's words were arriving is put back.
func readFifo(t *testing.T, fifo string, done chan Result) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo) // blocks until a writer opens it
		got <- string(b)
	}()
	select {
	case s := <-got:
		return s
	case res := <-done:
		// A program that writes and exits can end the check before the
		// reader returns: both channels are then ready. Release a reader
		// still waiting in open (non-blocking: a reader that has finished
		// leaves no one to open for), and keep what was written, if any.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		if s := <-got; s != "" {
			done <- res // the caller still waits for the result
			return s
		}
		t.Fatalf("the check ended before its program wrote to the fifo: %s %q", res.Status, res.Message)
		return ""
	}
}

// waitProcessGone waits up to 5s for process pid to be dead (gone, or a
// zombie awaiting its reaper).
func waitProcessGone(pid int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return true
		}
	}
	return false
}

// waitGroupGone waits until process group pgid has no live process (a
// zombie awaiting its reaper is dead), and returns those still live after
// 5s. SIGKILL is delivered asynchronously, so a process may take a moment
// to go.
func waitGroupGone(t *testing.T, pgid int) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return nil // no process at all in the group
		}
		live := liveInGroup(t, pgid)
		if len(live) == 0 || time.Now().After(deadline) {
			return live
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveInGroup lists, from /proc, the processes of group pgid that are not zombies.
func liveInGroup(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 3 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid && f[0] != "Z" && f[0] != "X" {
			live = append(live, pid)
		}
	}
	return live
}
