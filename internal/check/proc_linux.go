package check

import (
	"context"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
	"unsafe"
)

// pipeGrace is how long runGroup waits, once the process group is dead, for
// the output pipe to close. Only a process that left the group can still
// hold it open.
const pipeGrace = 500 * time.Millisecond

// runGroup runs cmd in a process group of its own, copying its stdout and
// stderr to out, until it exits or ctx is done. Either way it then kills
// the whole group. killed reports that ctx ended it. err is non-nil only
// when cmd could not start.
//
// The group is killed before the leader is reaped: a reaped leader's pid
// (the group id) can be reused by a new process, and kill(-pgid) would then
// hit a stranger. An exited but unreaped leader holds the id.
func runGroup(ctx context.Context, cmd *exec.Cmd, out io.Writer) (state *os.ProcessState, killed bool, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, false, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw // *os.File: the child writes to the pipe directly, no copying goroutines in exec
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close() // the child has its copy; ours would keep the pipe open forever
	if err != nil {
		return nil, false, err
	}
	pgid := cmd.Process.Pid

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(out, pr)
	}()
	exited := make(chan struct{})
	reaped := false // set before exited closes
	go func() {
		defer close(exited)
		if waitExited(pgid) != nil {
			// Cannot happen for our own child; if it does, reap it and
			// leave the group alone rather than risk killing a stranger.
			cmd.Wait()
			reaped = true
		}
	}()

	select {
	case <-exited:
	case <-ctx.Done():
		killed = true
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	if !reaped {
		syscall.Kill(-pgid, syscall.SIGKILL) // what the leader left behind
		cmd.Wait()                           // reap; the exit status is in cmd.ProcessState
	}

	select {
	case <-copied:
	case <-time.After(pipeGrace):
		pr.Close() // unblocks the copy
		<-copied
	}
	return cmd.ProcessState, killed, nil
}

// waitExited blocks until process pid has exited, without reaping it
// (waitid with WNOWAIT).
func waitExited(pid int) error {
	const pPID = 1     // idtype_t P_PID
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}
