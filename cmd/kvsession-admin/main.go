// Command kvsession-admin counts, lists, shows and ends the sessions of a
// kvsession server backend, logs a user out everywhere and purges expired
// sessions, without knowing any session's id (a session is named by its
// handle).
//
// It works on a store it opens itself, a Redis server or a Badger
// directory, or through the admin handler a running service mounts
// (package admin):
//
//	kvsession-admin -redis redis://127.0.0.1:6379 count
//	kvsession-admin -badger ./data list
//	kvsession-admin -url https://svc.internal/admin/sessions -header "Authorization: Bearer $TOKEN" destroy-user ada
//
// Commands:
//
//	count                 count live sessions (-expired: and expired ones the store keeps)
//	list                  list sessions (-user NAME: one user's, from the user's set)
//	show HANDLE           show one session (-values: with its values)
//	destroy HANDLE        end one session
//	destroy-user USER     log USER out everywhere
//	purge                 delete expired sessions the store still keeps
//
// Output is a table, or with -json one JSON object per line. On a
// terminal, long walks report progress on standard error (-progress forces
// it on, -progress=false off).
//
// Badger lets one process open a directory at a time: while the service
// that owns the directory runs, use -url and the service's admin handler.
// On a store opened directly, give the service's -prefix and timeouts, so
// that sessions are found and judged expired as the service judges them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command, apart from the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := o.flags(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmd, err := parseCommand(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "kvsession-admin:", err)
		fs.Usage()
		return 2
	}
	t, err := o.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "kvsession-admin:", err)
		return 1
	}
	defer t.Close()
	out := newPrinter(stdout, o.json)
	if err := t.do(ctx, cmd.request(o), out, o.progressTo(stderr)); err != nil {
		fmt.Fprintln(stderr, "kvsession-admin:", err)
		if errors.Is(err, errNotFound) {
			return 3
		}
		return 1
	}
	return 0
}

// usage is the command's help text, after its flags.
const usage = `usage: kvsession-admin (-redis URL | -badger DIR | -url URL) [flags] COMMAND [ARG]

commands:
  count                 count live sessions
  list                  list sessions (-user NAME: one user's)
  show HANDLE           show one session (-values: with its values)
  destroy HANDLE        end one session
  destroy-user USER     log USER out everywhere
  purge                 delete expired sessions the store still keeps

flags:
`

func (o *options) flags(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kvsession-admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.redisURL, "redis", "", "open the Redis server at this URL (redis://[user:password@]host:port, rediss:// for TLS)")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "", "the Redis store's key prefix (redisstore Options.Prefix; default its DefaultPrefix)")
	fs.StringVar(&o.badgerDir, "badger", "", "open the Badger store in this directory (not while a service has it open)")
	fs.StringVar(&o.url, "url", "", "use the admin handler a service serves at this URL")
	fs.Var(&o.headers, "header", "add this header (\"Name: value\") to every request to -url; repeatable")
	fs.StringVar(&o.prefix, "prefix", "", "the service's kvsession Config.Prefix, on a store opened directly")
	fs.DurationVar(&o.idle, "idle-timeout", 0, "the service's Config.IdleTimeout, on a store opened directly")
	fs.DurationVar(&o.absolute, "absolute-timeout", 0, "the service's Config.AbsoluteTimeout, on a store opened directly")
	fs.DurationVar(&o.maxAge, "max-age", 0, "the service's Config.MaxAge, on a store opened directly (default kvsession's)")
	fs.StringVar(&o.user, "user", "", "list: only USER's sessions, from the user's set")
	fs.BoolVar(&o.values, "values", false, "list, show: include each session's values")
	fs.BoolVar(&o.expired, "expired", false, "count, list, show: include expired sessions the store still keeps")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per line instead of a table")
	fs.Var(&o.progress, "progress", "report progress of long walks on standard error (default: when it is a terminal)")
	return fs
}
