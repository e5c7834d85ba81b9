// Command playground is a small server for trying kvsession by hand (with
// curl or a browser) and for exercising the library end to end in tests.
//
// It serves the same routes (see routes.go), with the same answers, on
// each HTTP server kvsession has an adapter for, chosen with -server:
// fasthttp (the default, with kvfasthttp), nethttp (the standard library's
// net/http, with kvhttp) or fiber (Fiber v3, with kvfiber). The start log
// says which one runs. The playground is a module of its own, so that
// Fiber stays out of the core module's dependencies; from the repository's
// root, go.work makes `go run ./examples/playground` find it.
//
// With -backend server (the default) sessions live in a store and the
// cookie carries only their id: Badger under ./data/sessions by default, so
// they survive restarts, or the process's memory with -store memory.
//
// With -backend cookie the whole session is sealed with AES-256-GCM into
// the cookie, split over cookies session-0, session-1, … when it outgrows
// one; no store is opened (-store and -dir are ignored). The keys come from
// -secret or the KVSESSION_SECRET environment variable (the flag wins): a
// comma-separated list of 32-byte keys written as 64 hex characters each.
// The first key seals; every key opens, so a key is rotated by putting a new
// one first and keeping the old one after it until its cookies have expired.
// Without either, the playground makes a random key at each start, and
// cookie sessions do not survive a restart.
//
//	go run ./examples/playground
//	curl -c jar -b jar -X PUT --data alice localhost:8080/session/name
//	curl -c jar -b jar localhost:8080/session
//
//	go run ./examples/playground -server nethttp   # or -server fiber
//
//	go run ./examples/playground -max-age 1h -max-age-limit 720h
//	curl -c jar -b jar -X POST 'localhost:8080/login?user=alice&remember=720h'
//
//	export KVSESSION_SECRET=$(openssl rand -hex 32)
//	go run ./examples/playground -backend cookie
//
// Beware that curl sends at most 8190 bytes of cookies per request: with
// -backend cookie, a session of more than about 5 KB takes three or more
// segments, curl leaves some out, and the server starts a fresh session.
// Browsers (and Go's net/http) send them all.
//
// Sessions can be bound to a user (POST /login?user=U) and a user logged out
// of all of them at once (POST /logout-all?user=U). A login may ask to be
// remembered for longer than -max-age, up to -max-age-limit ("remember
// me"): POST /login?user=U&remember=720h. The server backend finds
// a user's sessions in its store. The cookie backend cannot reach cookies
// already handed out, so it records a revocation that refuses them: the
// playground keeps revocations in the process's memory, so they are
// forgotten at restart, and a cookie revoked before then opens again after.
//
// GET /devices shows the session's user where else they are logged in, and
// POST /devices/end?handle=H ends one of those sessions: the "where you're
// logged in" page of a real service (server backend only). With
// -record-client each login records its client, so the list can tell
// devices apart.
//
// With -admin-addr the playground also serves the operator's view of the
// store (package admin) on a second, token-protected listener, for
// cmd/kvsession-admin's -url:
//
//	go run ./examples/playground -store memory -admin-addr 127.0.0.1:9090 -admin-token secret
//	go run ./cmd/kvsession-admin -url http://127.0.0.1:9090/admin/sessions -header "Authorization: Bearer secret" list
//
// With -lock (on by default) the server backend lets one request at a time
// work on a session, so concurrent requests on one session never lose each
// other's writes; requests that only read (see readOnly in routes.go) skip
// the lock. Cookie sessions have no server state to lock: with -backend
// cookie the playground leaves the lock off and says so at start.
//
// With -id-header NAME the server backend also serves clients without
// cookies (apps, curl without a jar): a request carrying the header NAME,
// with any value ("new" to start), is served from the id it holds, and
// the response carries a new or changed id in NAME, never a cookie; an
// empty NAME means the id leads nowhere any more (DELETE /session, say)
// and the client should forget it. No header in the answer: keep the id
// you have. Requests without the header are served by cookie as ever, and
// an id is never read from the query string (kvsession.Config.IDHeader):
//
//	go run ./examples/playground -id-header X-Session-Id
//	curl -si -H 'X-Session-Id: new' localhost:8080/counter     # X-Session-Id: <id>, body 1
//	curl -si -H 'X-Session-Id: <id>' localhost:8080/counter    # no X-Session-Id, body 2
//	curl -si -H 'X-Session-Id: <id>' -X DELETE localhost:8080/session   # X-Session-Id: (empty)
//
// Flags:
//
//	-addr host:port          listen address; port 0 picks a free one (127.0.0.1:8080)
//	-server fasthttp|nethttp|fiber
//	                         the HTTP server the routes run on (fasthttp)
//	-backend server|cookie   where sessions live (server)
//	-store badger|memory|redis  the server backend's store (badger)
//	-dir path                Badger directory (./data/sessions)
//	-redis-addr host:port[,host:port...]
//	                         Redis server or Cluster nodes, with -store redis (127.0.0.1:6379);
//	                         several: the playground starts while any one answers.
//	                         Playgrounds sharing one Redis share their sessions
//	-redis-prefix p          prefix of the store's Redis keys (kvsession:)
//	-secret KEY[,KEY...]     the cookie backend's keys, 64 hex characters each
//	-max-age duration        session lifetime: store TTL or sealed expiry, and cookie Max-Age (336h)
//	-max-age-limit duration  the longest lifetime POST /login?remember= may ask for
//	                         (0: -max-age, so remember-me can only shorten it)
//	-extend-on-access        push a session's expiry back on every request that reads it
//	                         (old name -renew-on-access, still accepted)
//	-idle-timeout duration   end a session unused for that long (0: off; else at least 1s);
//	                         not with -extend-on-access, which it generalises
//	-absolute-timeout d      end a session that long after it was created, however active (0: off)
//	-rotation-interval d     give a session a new id that long after its last one (0: off);
//	                         server backend only (old name -renewal-timeout, still accepted)
//	-lock                    one request at a time per session (true); -lock=false turns it off.
//	                         Server backend only: ignored, with a note in the log, by -backend cookie
//	-record-client           at POST /login, record the client's User-Agent and IP address
//	                         (Session.SetClientInfo) for GET /devices (false: personal data,
//	                         recorded only when asked). Server backend only: an error with -backend cookie
//	-admin-addr host:port    also serve the admin handler (package admin) on a plain-HTTP
//	                         listener of its own, under /admin/sessions/ (""; off). Port 0
//	                         picks a free one; the start log's admin_addr says which. Keep it
//	                         on loopback. Server backend only: an error with -backend cookie
//	-admin-token TOKEN       the bearer token every admin request must send, as
//	                         "Authorization: Bearer TOKEN" (else 401); required with -admin-addr
//	-id-header NAME          also carry session ids in request and response header NAME, for
//	                         clients without cookies (empty: off). Server backend only
//
// Each flag sets the kvsession.Config field of the same name; a combination
// the library refuses stops the playground with the library's message,
// which names the field, after the flag that set it.
//
// See routes.go for the routes.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/redisstore"
)

// shutdownTimeout bounds how long in-flight requests may delay exit; after
// it the stores are closed anyway, so a stuck client cannot keep Badger from
// being flushed.
const shutdownTimeout = 10 * time.Second

// secretEnv is the environment variable that holds the cookie backend's
// keys when -secret is not given. Unlike the flag, it keeps the keys out of
// the process list.
const secretEnv = "KVSESSION_SECRET"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts the graceful shutdown, restore the
	// default handling so that a second Ctrl-C kills at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
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
	addr             string
	server           string
	backend          string
	store            string
	dir              string
	redisAddr        string
	redisPrefix      string
	secret           string
	maxAge           time.Duration
	maxAgeLimit      time.Duration
	extendOnAccess   bool
	idleTimeout      time.Duration
	absoluteTimeout  time.Duration
	rotationInterval time.Duration
	lock             bool
	recordClient     bool
	adminAddr        string
	adminToken       string
	idHeader         string
	cookieExpires    bool
	set              map[string]bool // the flags given on the command line
}

func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("playground", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: playground [flags]

Serves the kvsession playground routes (see routes.go) until interrupted.

Environment:
  %s
    	the cookie backend's keys when -secret is not given, in the same form

Flags:
`, secretEnv)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	fs.StringVar(&o.server, "server", "fasthttp", "the HTTP server the routes run on: `fasthttp|nethttp|fiber`\n"+
		"(fasthttp with kvfasthttp, net/http with kvhttp, Fiber v3 with kvfiber); the same routes on each")
	fs.StringVar(&o.backend, "backend", "server", "where sessions live: server (in -store; the cookie holds an id)\n"+
		"or cookie (sealed into the cookie with AES-256-GCM; no store)")
	fs.StringVar(&o.store, "store", "badger", "session store of -backend server: badger, memory or redis")
	fs.StringVar(&o.redisAddr, "redis-addr", "127.0.0.1:6379", "addresses of a Redis server, or nodes of a Redis Cluster, `host:port[,host:port...]` (with -store redis).\n"+
		"With several the store starts while any one answers: a standalone server's are tried in order,\n"+
		"and must all lead to that one server. Playgrounds sharing one Redis share their sessions")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "kvsession:", "prefix of every Redis key the store writes (with -store redis)")
	fs.StringVar(&o.dir, "dir", "./data/sessions", "Badger directory (with -backend server -store badger)")
	fs.StringVar(&o.secret, "secret", "", "keys of -backend cookie, `KEY[,KEY...]`: each 32 bytes written as 64 hex characters\n"+
		"(openssl rand -hex 32). The first seals, all open: put a new key first to rotate.\n"+
		"Overrides $"+secretEnv+"; with neither, a random key per start")
	fs.DurationVar(&o.maxAge, "max-age", kvsession.DefaultMaxAge, "session lifetime: store TTL (server) or sealed expiry (cookie), and cookie Max-Age")
	fs.DurationVar(&o.maxAgeLimit, "max-age-limit", 0, "the longest lifetime a login may ask for with POST /login?user=U&remember=DURATION\n"+
		"(remember me), from -max-age to 400 days; 0: -max-age")
	fs.BoolVar(&o.cookieExpires, "cookie-expires", false, "add an Expires date beside Max-Age to the session cookie, for browsers from before\n"+
		"Max-Age (Internet Explorer 11 and older); current browsers need Max-Age alone")
	fs.BoolVar(&o.extendOnAccess, "extend-on-access", false, "push a session's expiry back on every request that reads it")
	fs.BoolVar(&o.extendOnAccess, "renew-on-access", false, "the old name of -extend-on-access")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 0, "end a session unused for that long (0: off; else at least 1s).\n"+
		"Cannot be combined with -extend-on-access, which it generalises")
	fs.DurationVar(&o.absoluteTimeout, "absolute-timeout", 0, "end a session that long after it was created, however active (0: off)")
	fs.DurationVar(&o.rotationInterval, "rotation-interval", 0, "give a session a new id that long after it was created or last rotated (0: off).\n"+
		"Server backend only")
	fs.DurationVar(&o.rotationInterval, "renewal-timeout", 0, "the old name of -rotation-interval")
	fs.BoolVar(&o.lock, "lock", true, "let one request at a time work on a session, so that concurrent requests\n"+
		"lose no writes (-lock=false: off). Server backend only; -backend cookie ignores it")
	fs.BoolVar(&o.recordClient, "record-client", false, "record the client's User-Agent and IP address at POST /login (Session.SetClientInfo),\n"+
		"for GET /devices to show. Off by default: both are personal data. Server backend only")
	fs.StringVar(&o.adminAddr, "admin-addr", "", "serve the admin handler (package admin, for kvsession-admin -url) at `host:port`,\n"+
		"under "+adminPrefix+"/, on a plain-HTTP listener of its own; port 0 picks a free one.\n"+
		"Keep it on loopback. Needs -admin-token; server backend only (default: off)")
	fs.StringVar(&o.adminToken, "admin-token", "", "the bearer `token` every request to -admin-addr must send (Authorization: Bearer TOKEN)")
	fs.StringVar(&o.idHeader, "id-header", "", "also carry session ids in request and response header `NAME` (such as X-Session-Id),\n"+
		"for clients without cookies: send NAME: new to start, then the id the answer gives.\n"+
		"Never from the query string; requests without NAME use the cookie. Empty: off. Server backend only")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if _, ok := servers[o.server]; !ok {
		return o, fmt.Errorf("unknown -server %q: want fasthttp, nethttp or fiber", o.server)
	}
	switch o.backend {
	case "server", "cookie":
	default:
		return o, fmt.Errorf("unknown -backend %q: want server or cookie", o.backend)
	}
	switch o.store {
	case "badger", "memory", "redis":
	default:
		return o, fmt.Errorf("unknown -store %q: want badger, memory or redis", o.store)
	}
	// Checked here, before any store is opened, so that a refused start
	// leaves nothing behind.
	if o.backend == "cookie" {
		if o.recordClient {
			return o, errors.New("-record-client does not apply to -backend cookie: cookie sessions keep no server-side record " +
				"for GET /devices to list (leave it off)")
		}
		if o.adminAddr != "" {
			return o, errors.New("-admin-addr does not apply to -backend cookie: the admin handler walks a session store, " +
				"and cookie sessions have none (leave it empty)")
		}
	}
	if o.adminAddr != "" && o.adminToken == "" {
		return o, errors.New("-admin-addr needs -admin-token: whoever reaches the admin port can end any session and read its values, " +
			"so every request must send Authorization: Bearer TOKEN")
	}
	// A token a header cannot carry as it is (clients trim spaces) could
	// never be matched. The error gives the position, never the token.
	if i := strings.IndexFunc(o.adminToken, func(r rune) bool { return r <= ' ' || r > '~' }); i >= 0 && o.adminAddr != "" {
		return o, fmt.Errorf("-admin-token: byte %d is not printable ASCII: use letters, digits and punctuation "+
			"(openssl rand -hex 32 makes a good token)", i+1)
	}
	return o, nil
}

// parseSecrets parses a comma-separated list of hex keys, as -secret and
// KVSESSION_SECRET take them. source names where the list came from, for
// the errors; they give the key's position but never its text.
func parseSecrets(list, source string) ([][]byte, error) {
	items := strings.Split(list, ",")
	keys := make([][]byte, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		where := fmt.Sprintf("%s: key %d of %d", source, i+1, len(items))
		if item == "" {
			return nil, fmt.Errorf("%s is empty (separate keys with single commas)", where)
		}
		if len(item) != 2*kvsession.SecretBytes {
			return nil, fmt.Errorf("%s is %d characters long, want %d hex characters (a %d-byte key, e.g. from openssl rand -hex %d)",
				where, len(item), 2*kvsession.SecretBytes, kvsession.SecretBytes, kvsession.SecretBytes)
		}
		k, err := hex.DecodeString(item)
		if err != nil {
			// The position, not the character: the error must not leak
			// the key.
			bad := strings.IndexFunc(item, func(r rune) bool { return !strings.ContainsRune("0123456789abcdefABCDEF", r) })
			return nil, fmt.Errorf("%s is not hexadecimal (character %d)", where, bad+1)
		}
		for j, prev := range keys {
			if bytes.Equal(prev, k) {
				return nil, fmt.Errorf("%s is the same as key %d", where, j+1)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// cookieSecrets returns the cookie backend's keys and where they came
// from: -secret if given, else KVSESSION_SECRET if not empty, else one
// random key for this run only.
func cookieSecrets(o options, getenv func(string) string) (keys [][]byte, source string, err error) {
	if o.set["secret"] {
		keys, err = parseSecrets(o.secret, "-secret")
		return keys, "flag", err
	}
	if getenv != nil {
		if env := getenv(secretEnv); env != "" {
			keys, err = parseSecrets(env, secretEnv)
			return keys, "env", err
		}
	}
	k := make([]byte, kvsession.SecretBytes)
	if _, err := rand.Read(k); err != nil {
		return nil, "", fmt.Errorf("drawing a random cookie key: %w", err)
	}
	return [][]byte{k}, "random", nil
}

// parseRedisAddrs splits -redis-addr into the seed addresses
// redisstore.Options.Addrs takes.
func parseRedisAddrs(list string) ([]string, error) {
	items := strings.Split(list, ",")
	addrs := make([]string, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("-redis-addr: address %d of %d is empty (separate addresses with single commas)", i+1, len(items))
		}
		addrs = append(addrs, item)
	}
	return addrs, nil
}

// openStore opens the store the flags chose.
func openStore(o options) (store.Store, error) {
	switch o.store {
	case "memory":
		return memstore.New(memstore.Options{}), nil
	case "redis":
		// Open pings: a Redis that is down fails the start, clearly.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := parseRedisAddrs(o.redisAddr)
		if err != nil {
			return nil, err
		}
		return redisstore.Open(ctx, redisstore.Options{Addrs: addrs, Prefix: o.redisPrefix})
	}
	// Badger creates the directory too; doing it here, 0700, turns a bad
	// -dir into an error that names the directory, before Badger starts.
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the session directory: %w", err)
	}
	st, err := badgerstore.Open(badgerstore.Options{Dir: o.dir})
	if err != nil {
		return nil, fmt.Errorf("opening Badger in %s: %w", o.dir, err)
	}
	return st, nil
}

// revocationStore is the registry name of the memory store where the cookie
// backend keeps its per-user revocations (POST /logout-all).
const revocationStore = "revocations"

// configFlags names the flag that sets each Config field the playground
// sets, so that a ConfigError can say which flag to change.
var configFlags = map[string]string{
	"MaxAge":           "-max-age",
	"MaxAgeLimit":      "-max-age-limit",
	"ExtendOnAccess":   "-extend-on-access",
	"IdleTimeout":      "-idle-timeout",
	"AbsoluteTimeout":  "-absolute-timeout",
	"RotationInterval": "-rotation-interval",
	"Lock":             "-lock",
	"IDHeader":         "-id-header",
}

// oldFlagNames maps a renamed flag to its old name, which still works.
var oldFlagNames = map[string]string{
	"-extend-on-access":  "-renew-on-access",
	"-rotation-interval": "-renewal-timeout",
}

// flagName is the name the command line gave the flag called name now:
// its old name if that is the one it used.
func flagName(name string, set map[string]bool) string {
	if old, renamed := oldFlagNames[name]; renamed && set[old[1:]] {
		return old
	}
	return name
}

// flagError puts the flag that set the field a *kvsession.ConfigError
// names in front of the library's message, which stays whole (and the
// ConfigError reachable with errors.As). Other errors pass unchanged.
func flagError(err error, set map[string]bool) error {
	var ce *kvsession.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	if name, ok := configFlags[ce.Field]; ok {
		return fmt.Errorf("%s: %w", flagName(name, set), err)
	}
	return err
}

// openBackend builds the backend the flags chose. closeFn, never nil, closes
// what it opened (the session store of the server backend, the revocation
// store of the cookie backend) and must be called once the server has
// stopped. attrs describe the backend for the start log.
func openBackend(o options, getenv func(string) string, logger *slog.Logger) (b kvsession.Backend, closeFn func() error, attrs []any, err error) {
	cfg := kvsession.Config{
		MaxAge:           o.maxAge,
		MaxAgeLimit:      o.maxAgeLimit,
		ExtendOnAccess:   o.extendOnAccess,
		CookieExpires:    o.cookieExpires,
		IdleTimeout:      o.idleTimeout,
		AbsoluteTimeout:  o.absoluteTimeout,
		RotationInterval: o.rotationInterval,
		Logger:           logger,
	}
	noClose := func() error { return nil }
	if o.backend == "cookie" {
		// Checked here, not left to NewCookie, so that the error names the
		// flag. -lock, by contrast, is on by default and so cannot be an
		// error here: it is left out of the Config below.
		if o.rotationInterval != 0 {
			return nil, noClose, nil, fmt.Errorf("%s does not apply to -backend cookie: cookie sessions have no id to rotate (leave it 0)", flagName("-rotation-interval", o.set))
		}
		if o.idHeader != "" {
			return nil, noClose, nil, errors.New("-id-header does not apply to -backend cookie: cookie sessions have no id to carry in a header (leave it empty)")
		}
		secrets, source, err := cookieSecrets(o, getenv)
		if err != nil {
			return nil, noClose, nil, err
		}
		cfg.Secrets = secrets
		// cfg.Lock stays false whatever -lock says: the cookie backend
		// refuses it, having no server state to lock.
		//
		// Revocations (POST /logout-all) live in the process's memory: one
		// playground honours them until it stops. Several servers, or a
		// restart, would need a shared, persistent store here.
		reg := store.NewRegistry(nil)
		if err := reg.Register(revocationStore, memstore.New(memstore.Options{})); err != nil {
			return nil, noClose, nil, errors.Join(err, reg.Close())
		}
		cfg.RevocationStore = revocationStore
		cb, err := kvsession.NewCookie(cfg, reg)
		if err != nil {
			return nil, noClose, nil, errors.Join(err, reg.Close())
		}
		for _, name := range []string{"store", "dir"} {
			if o.set[name] {
				logger.Warn("playground: -" + name + " is ignored with -backend cookie")
			}
		}
		logger.Info("playground: cookie backend: sessions are sealed into the client's cookies; no session store is opened. " +
			"User revocations (POST /logout-all) are kept in memory and forgotten at restart")
		if o.lock {
			logger.Info("playground: -lock does not apply to -backend cookie: each request carries its own copy of the session, " +
				"so there is no server state to lock, and concurrent requests on one session may overwrite each other's changes")
		}
		if source == "random" {
			logger.Warn("playground: no -secret or " + secretEnv + ": cookies are sealed with a random key made for this run, " +
				"so cookie sessions will not survive a restart; to keep them, pass -secret or set " + secretEnv +
				" to a key of 64 hex characters (openssl rand -hex 32)")
		}
		return cb, reg.Close, []any{"store", "none", "revocations", "memory", "keys", len(secrets), "key_source", source,
			"max_cookie_segments", cb.Config().MaxCookieSegments}, nil
	}

	if o.set["secret"] {
		logger.Warn("playground: -secret is ignored with -backend server")
	}
	cfg.Lock = o.lock
	cfg.IDHeader = o.idHeader
	cfg.Store = kvsession.DefaultStore
	// Validated before the store opens, so that bad flags do not create
	// the Badger directory.
	if err := cfg.Validate(); err != nil {
		return nil, noClose, nil, err
	}
	st, err := openStore(o)
	if err != nil {
		return nil, noClose, nil, err
	}
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, st); err != nil {
		st.Close()
		return nil, noClose, nil, err
	}
	// From here on the registry owns the store: closing it on every path
	// is what makes Badger flush its memtable and release its lock file.
	sb, err := kvsession.New(cfg, reg)
	if err != nil {
		return nil, noClose, nil, errors.Join(err, reg.Close())
	}
	attrs = []any{"store", o.store}
	if o.idHeader != "" {
		attrs = append(attrs, "id_header", o.idHeader)
	}
	switch o.store {
	case "badger":
		attrs = append(attrs, "dir", o.dir)
	case "redis":
		attrs = append(attrs, "redis_addr", o.redisAddr, "redis_prefix", o.redisPrefix)
	}
	return sb, reg.Close, attrs, nil
}

// lifecycleAttrs describe, for the start log, the session lifecycle in
// effect: the backend's own Config, defaults applied, not the flags.
func lifecycleAttrs(cfg kvsession.Config) []any {
	attrs := []any{"max_age", cfg.MaxAge, "max_age_limit", cfg.MaxAgeLimit, "renew_on_access", cfg.ExtendOnAccess,
		"idle_timeout", cfg.IdleTimeout}
	if cfg.IdleTimeout > 0 {
		attrs = append(attrs, "extension_delay", cfg.ExtensionDelay)
	}
	attrs = append(attrs, "absolute_timeout", cfg.AbsoluteTimeout, "renewal_timeout", cfg.RotationInterval)
	if cfg.RotationInterval > 0 {
		attrs = append(attrs, "renewal_grace", cfg.RotationGrace)
	}
	attrs = append(attrs, "lock", cfg.Lock)
	if cfg.Lock {
		attrs = append(attrs, "lock_wait", cfg.LockWait, "lock_lease", cfg.LockLease)
	}
	return attrs
}

// run starts the server described by args and serves until ctx is done,
// then shuts it down and closes the store. It reads the environment through
// getenv (nil: an empty environment) and logs to logOut and, once the
// listener is open, calls ready (if not nil) with its real address, which is
// how a caller learns the port chosen for ":0".
func run(ctx context.Context, args []string, getenv func(string) string, logOut io.Writer, ready func(addr string)) (err error) {
	o, err := parseFlags(args, logOut)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))

	backend, closeBackend, backendAttrs, err := openBackend(o, getenv, logger)
	if err != nil {
		return flagError(err, o.set)
	}
	cfg := backend.Config()
	defer func() {
		if cerr := closeBackend(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	if o.set["admin-token"] && o.adminAddr == "" {
		logger.Warn("playground: -admin-token is ignored without -admin-addr")
	}

	srv, err := servers[o.server](newApp(logger, backend, o.recordClient), backend, logger)
	if err != nil {
		return err
	}

	// Listening ourselves, rather than ListenAndServe, lets ":0" work and
	// lets us report the real address before serving.
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	attrs := []any{"addr", ln.Addr().String(), "server", o.server, "backend", o.backend}
	attrs = append(attrs, backendAttrs...)
	attrs = append(attrs, lifecycleAttrs(cfg)...)
	attrs = append(attrs, "read_only_reads", cfg.Lock)
	attrs = append(attrs, srv.logAttrs()...)
	attrs = append(attrs, "record_client", o.recordClient)

	// The admin port, if asked for: parseFlags made sure that the backend
	// is the server one and that there is a token.
	var adminSrv *http.Server
	var adminLn net.Listener
	if o.adminAddr != "" {
		if adminLn, err = net.Listen("tcp", o.adminAddr); err != nil {
			ln.Close()
			return fmt.Errorf("-admin-addr: %w", err)
		}
		adminSrv = newAdminServer(backend.(*kvsession.ServerBackend), o.adminToken, logger)
		// Added last: scripts read the start log by key.
		attrs = append(attrs, "admin_addr", adminLn.Addr().String())
		if !isLoopback(adminLn.Addr()) {
			logger.Warn("playground: the admin port " + adminLn.Addr().String() + " is not on loopback: it serves plain HTTP, " +
				"so -admin-token crosses the network in the clear. Keep -admin-addr on 127.0.0.1, or put TLS in front of it")
		}
	}
	logger.Info("playground listening", attrs...)
	if ready != nil {
		ready(ln.Addr().String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.serve(ln) }()
	// adminErr stays nil, and so never ready, without an admin port.
	var adminErr chan error
	if adminSrv != nil {
		adminErr = make(chan error, 1)
		go func() { adminErr <- adminSrv.Serve(adminLn) }()
	}

	var failed error
	select {
	case err := <-serveErr:
		// Serve only returns on its own when the listener fails.
		ln.Close()
		if adminSrv != nil {
			adminSrv.Close()
			<-adminErr
		}
		return fmt.Errorf("serving: %w", err)
	case err := <-adminErr:
		// The same for the admin port's: the main server is then shut
		// down gracefully, as on a signal.
		adminErr = nil
		failed = fmt.Errorf("serving the admin port: %w", err)
		logger.Error("playground: " + failed.Error())
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Both servers at once, within one deadline: either may be waiting
	// for requests in flight (the admin port for a walk).
	adminShutdown := make(chan error, 1)
	if adminSrv != nil {
		go func() {
			err := adminSrv.Shutdown(sctx)
			if err != nil {
				// Past the deadline: end the walks still running, which
				// would otherwise go on under the store being closed.
				adminSrv.Close()
			}
			adminShutdown <- err
		}()
	} else {
		adminShutdown <- nil
	}
	// shutdown is what waits for in-flight requests, so it must finish
	// before the store is closed under them.
	shutdownErr := srv.shutdown(sctx)
	// If the signal arrived before Serve registered the listener, shutdown
	// had nothing to close and Serve would block forever; closing it here
	// makes Serve return in every case.
	ln.Close()
	<-serveErr
	if err := <-adminShutdown; err != nil {
		shutdownErr = errors.Join(shutdownErr, fmt.Errorf("admin port: %w", err))
	}
	if adminSrv != nil {
		adminLn.Close() // as ln above
		if adminErr != nil {
			<-adminErr
		}
	}
	if shutdownErr != nil {
		return errors.Join(failed, fmt.Errorf("shutting down: %w", shutdownErr))
	}
	if failed != nil {
		return failed
	}
	logger.Info("server stopped")
	return nil
}

// servers make the server of each -server value, serving the routes of
// the app over the backend. Each logs through logger what its HTTP server
// logs of its own.
var servers = map[string]func(a *app, backend kvsession.Backend, logger *slog.Logger) (server, error){
	"fasthttp": newFasthttpServer,
	"nethttp":  newNethttpServer,
	"fiber":    newFiberServer,
}

// server is one HTTP server the playground can serve its routes on.
type server interface {
	// serve serves the routes on ln until shutdown, or until ln fails.
	serve(ln net.Listener) error
	// shutdown stops accepting requests and waits, until ctx is done, for
	// those in flight to finish and save their sessions.
	shutdown(ctx context.Context) error
	// logAttrs describe the server's settings for the start log.
	logAttrs() []any
}
