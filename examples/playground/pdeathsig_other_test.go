//go:build unix && !linux

package main

import "os/exec"

// dieWithParent does nothing where there is no parent-death signal: the
// tests' cleanups still kill their children whenever the tests end.
func dieWithParent(*exec.Cmd) {}
