package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// command is one command line's command and its argument.
type command struct {
	verb, arg string
}

// arity is how many arguments each command takes.
var arity = map[string]int{
	"count": 0, "list": 0, "show": 1, "destroy": 1, "destroy-user": 1, "purge": 0,
}

func parseCommand(args []string) (command, error) {
	if len(args) == 0 {
		return command{}, errors.New("no command")
	}
	n, ok := arity[args[0]]
	switch {
	case !ok:
		return command{}, fmt.Errorf("unknown command %q", args[0])
	case len(args)-1 != n:
		return command{}, fmt.Errorf("%s takes %d argument(s), got %d", args[0], n, len(args)-1)
	}
	c := command{verb: args[0]}
	if n == 1 {
		c.arg = args[1]
	}
	return c, nil
}

// request is what a command asks the admin handler.
type request struct {
	verb, method, path string
	// notFoundIsEmpty: a 404 means no such session, not a wrong URL.
	notFoundIsEmpty bool
}

// request maps the command onto the admin handler's routes.
func (c command) request(o options) request {
	q := url.Values{}
	if o.values {
		q.Set("values", "1")
	}
	if o.expired {
		q.Set("expired", "1")
	}
	query := func() string {
		if len(q) == 0 {
			return ""
		}
		return "?" + q.Encode()
	}
	arg := url.PathEscape(c.arg)
	switch c.verb {
	case "count":
		return request{verb: c.verb, method: http.MethodGet, path: "/count" + query()}
	case "list":
		if o.user != "" {
			return request{verb: c.verb, method: http.MethodGet, path: "/users/" + url.PathEscape(o.user) + "/sessions"}
		}
		return request{verb: c.verb, method: http.MethodGet, path: "/sessions" + query()}
	case "show":
		return request{verb: c.verb, method: http.MethodGet, path: "/sessions/" + arg + query(), notFoundIsEmpty: true}
	case "destroy":
		return request{verb: c.verb, method: http.MethodDelete, path: "/sessions/" + arg}
	case "destroy-user":
		return request{verb: c.verb, method: http.MethodDelete, path: "/users/" + arg + "/sessions"}
	default: // purge
		return request{verb: c.verb, method: http.MethodPost, path: "/purge"}
	}
}
