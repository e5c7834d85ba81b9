// Command playground is a small fasthttp server for trying kvsession by hand
// (with curl or a browser) and for exercising the library end to end in
// tests. Sessions live in Badger under ./data/sessions by default, so they
// survive restarts; -store memory keeps them in the process instead.
//
//	go run ./examples/playground
//	curl -c jar -b jar -X PUT --data alice localhost:8080/session/name
//	curl -c jar -b jar localhost:8080/session
//
// See routes.go for the routes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	kvfasthttp "github.com/kvsession/kvsession/fasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badger"
	"github.com/kvsession/kvsession/store/memory"
)

// shutdownTimeout bounds how long in-flight requests may delay exit; after
// it the stores are closed anyway, so a stuck client cannot keep Badger from
// being flushed.
const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts the graceful shutdown, restore the
	// default handling so that a second Ctrl-C kills at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the flag package has already printed the usage
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "playground:", err)
		os.Exit(1)
	}
}

// options are the parsed command-line flags.
type options struct {
	addr          string
	store         string
	dir           string
	maxAge        time.Duration
	renewOnAccess bool
}

func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("playground", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	fs.StringVar(&o.store, "store", "badger", "session store: badger or memory")
	fs.StringVar(&o.dir, "dir", "./data/sessions", "Badger directory (with -store badger)")
	fs.DurationVar(&o.maxAge, "max-age", kvsession.DefaultMaxAge, "session lifetime: store TTL and cookie Max-Age")
	fs.BoolVar(&o.renewOnAccess, "renew-on-access", false, "refresh a session's expiry on every request that reads it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch o.store {
	case "badger", "memory":
	default:
		return o, fmt.Errorf("unknown -store %q: want badger or memory", o.store)
	}
	return o, nil
}

// openStore opens the store the flags chose.
func openStore(o options) (store.Store, error) {
	if o.store == "memory" {
		return memory.New(memory.Options{}), nil
	}
	// Badger creates the directory too; doing it here, 0700, turns a bad
	// -dir into an error that names the directory, before Badger starts.
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the session directory: %w", err)
	}
	st, err := badger.Open(badger.Options{Dir: o.dir})
	if err != nil {
		return nil, fmt.Errorf("opening Badger in %s: %w", o.dir, err)
	}
	return st, nil
}

// run starts the server described by args and serves until ctx is done,
// then shuts it down and closes the store. It logs to logOut and, once the
// listener is open, calls ready (if not nil) with its real address, which is
// how a caller learns the port chosen for ":0".
func run(ctx context.Context, args []string, logOut io.Writer, ready func(addr string)) (err error) {
	o, err := parseFlags(args, logOut)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))

	st, err := openStore(o)
	if err != nil {
		return err
	}
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, st); err != nil {
		st.Close()
		return err
	}
	// From here on the registry owns the store: closing it on every path
	// is what makes Badger flush its memtable and release its lock file.
	defer func() {
		if cerr := reg.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	backend, err := kvsession.New(kvsession.Config{
		MaxAge:        o.maxAge,
		RenewOnAccess: o.renewOnAccess,
		Store:         kvsession.DefaultStore,
		Logger:        logger,
	}, reg)
	if err != nil {
		return err
	}
	mw, err := kvfasthttp.New(backend, kvfasthttp.Options{
		// Health checks run often and carry no cookie worth reading;
		// skipping them keeps them off the store entirely.
		Skip: func(ctx *fasthttp.RequestCtx) bool { return string(ctx.Path()) == "/healthz" },
	})
	if err != nil {
		return err
	}
	server := &fasthttp.Server{
		Handler:      mw.Handler((&app{logger: logger}).handle),
		Name:         "kvsession-playground",
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  time.Minute,
		Logger:       fasthttpLogger{logger},
	}

	// Listening ourselves, rather than ListenAndServe, lets ":0" work and
	// lets us report the real address before serving.
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	attrs := []any{"addr", ln.Addr().String(), "store", o.store, "max_age", o.maxAge, "renew_on_access", o.renewOnAccess}
	if o.store == "badger" {
		attrs = append(attrs, "dir", o.dir)
	}
	logger.Info("playground listening", attrs...)
	if ready != nil {
		ready(ln.Addr().String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(ln) }()

	select {
	case err := <-serveErr:
		// Serve only returns on its own when the listener fails.
		ln.Close()
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Serve returns as soon as the listener closes; ShutdownWithContext is
	// what waits for in-flight requests, so it must finish before the store
	// is closed under them.
	shutdownErr := server.ShutdownWithContext(sctx)
	// If the signal arrived before Serve registered the listener, Shutdown
	// had nothing to close and Serve would block forever; closing it here
	// makes Serve return in every case.
	ln.Close()
	<-serveErr
	if shutdownErr != nil {
		return fmt.Errorf("shutting down: %w", shutdownErr)
	}
	logger.Info("server stopped")
	return nil
}

// fasthttpLogger routes fasthttp's own messages (connection errors and
// the like) to the same structured log as everything else.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Warn(fmt.Sprintf(format, args...), "source", "fasthttp")
}
