//go:build !unix

package redisstore

import "errors"

var errNoPause = errors.New("pausing a process needs SIGSTOP (unix)")

func freezeServer(*server) error { return errNoPause }
func thawServer(*server) error   { return errNoPause }
