// Package childproc holds what tests need for the processes they start
// (servers, crash-test children), once for every package.
package childproc

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel kill cmd's process when the process that
// started it dies, however it dies (a panic, go test's timeout), so that
// no test leaves a server behind. Call it before cmd.Start.
func DieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
