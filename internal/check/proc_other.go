//go:build !linux

package check

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
)

// runGroup needs waitid(WNOWAIT) to kill a process group safely; see
// proc_linux.go.
func runGroup(context.Context, *exec.Cmd, io.Writer) (*os.ProcessState, bool, error) {
	return nil, false, errors.New("exec checks run on Linux workers only")
}
