//go:build !linux

// Package childproc holds what tests need for the processes they start
// (servers, crash-test children), once for every package.
package childproc

import "os/exec"

// DieWithParent does nothing where there is no parent-death signal: the
// tests' cleanups still kill their children whenever the tests end.
func DieWithParent(*exec.Cmd) {}
