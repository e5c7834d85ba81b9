//go:build !linux

package redis

import "os/exec"

// setDeathSignal does nothing where there is no parent-death signal: a
// server is then left running only if the test binary dies.
func setDeathSignal(*exec.Cmd) {}
