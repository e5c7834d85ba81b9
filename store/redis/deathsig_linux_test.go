package redis

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill a server the tests started if the test
// binary dies without running its cleanup (a panic, or go test's timeout).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
