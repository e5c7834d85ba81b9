package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/admin"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/redisstore"
)

// options are the command's flags.
type options struct {
	redisURL, redisPrefix, badgerDir string
	url                              string
	headers                          headerList
	prefix                           string
	idle, absolute, maxAge           time.Duration
	user                             string
	values, expired, json            bool
	progress                         optionalBool
}

// target is where the command's requests go: a service's admin handler,
// or one served in this process over a store the command opened.
type target struct {
	base    string
	client  *http.Client
	headers http.Header
	close   func() error
}

func (t *target) Close() error {
	if t.close == nil {
		return nil
	}
	return t.close()
}

// open makes the target the flags name: exactly one of -redis, -badger
// and -url.
func (o *options) open(ctx context.Context) (*target, error) {
	n := 0
	for _, set := range []string{o.redisURL, o.badgerDir, o.url} {
		if set != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("give exactly one of -redis, -badger and -url")
	}
	if o.url != "" {
		h := http.Header{}
		for _, line := range o.headers {
			h.Add(line.name, line.value)
		}
		return &target{base: strings.TrimSuffix(o.url, "/"), client: &http.Client{}, headers: h}, nil
	}
	st, err := o.openStore(ctx)
	if err != nil {
		return nil, err
	}
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, st); err != nil {
		st.Close()
		return nil, err
	}
	b, err := kvsession.New(kvsession.Config{
		Prefix: o.prefix, IdleTimeout: o.idle, AbsoluteTimeout: o.absolute, MaxAge: o.maxAge,
	}, reg)
	if err != nil {
		st.Close()
		return nil, err
	}
	h := admin.NewHandler(b)
	return &target{
		base:    "http://local",
		client:  &http.Client{Transport: inProcess{h}},
		headers: http.Header{},
		close:   reg.Close, // closes the store: Badger writes what it holds
	}, nil
}

// openStore opens the store of -redis or -badger.
func (o *options) openStore(ctx context.Context) (store.Store, error) {
	if o.badgerDir != "" {
		if _, err := os.Stat(o.badgerDir); err != nil {
			return nil, fmt.Errorf("-badger: %w", err) // Open would create it
		}
		st, err := badgerstore.Open(badgerstore.Options{Dir: o.badgerDir, GCInterval: -1})
		if err != nil {
			return nil, fmt.Errorf("-badger %s: %w (while a service has the directory open, use -url and its admin handler)", o.badgerDir, err)
		}
		return st, nil
	}
	opts, err := redisOptions(o.redisURL)
	if err != nil {
		return nil, err
	}
	opts.Prefix = o.redisPrefix
	st, err := redisstore.Open(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	return st, nil
}

// redisOptions reads a redis:// or rediss:// URL.
func redisOptions(raw string) (redisstore.Options, error) {
	var opts redisstore.Options
	u, err := url.Parse(raw)
	if err != nil {
		return opts, fmt.Errorf("-redis: %w", err)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		opts.TLS = &tls.Config{ServerName: u.Hostname()}
	default:
		return opts, fmt.Errorf("-redis: URL scheme %q, want redis or rediss", u.Scheme)
	}
	if u.Host == "" {
		return opts, errors.New("-redis: URL without a host")
	}
	if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		return opts, fmt.Errorf("-redis: database %q: kvsession keeps sessions in database 0", db)
	}
	opts.Addr = u.Host
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	return opts, nil
}

// inProcess serves requests with an http.Handler in this process,
// streaming its answer as a server would.
type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	// Closing the answer early stops the walk behind it.
	ctx, cancel := context.WithCancel(r.Context())
	r = r.WithContext(ctx)
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		p.h.ServeHTTP(w, r)
		w.WriteHeader(http.StatusOK)
		pw.Close()
	}()
	<-w.ready
	return &http.Response{StatusCode: w.status, Header: w.header, Body: cancelOnClose{pr, cancel}, Request: r}, nil
}

// cancelOnClose is an in-process answer's body: closing it cancels the
// request.
type cancelOnClose struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	c.cancel()
	return c.PipeReader.Close()
}

// pipeWriter is the ResponseWriter of an in-process request.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	status int
	ready  chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	close(w.ready)
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

func (w *pipeWriter) Flush() {}

// errNotFound is what do returns when the session or user asked for has
// no session.
var errNotFound = errors.New("no such session")

// do sends req and prints what comes back: sessions as they arrive,
// progress to progress (if not nil), and the result.
func (t *target) do(ctx context.Context, req request, out *printer, progress io.Writer) error {
	r, err := http.NewRequestWithContext(ctx, req.method, t.base+req.path, nil)
	if err != nil {
		return err
	}
	for name, values := range t.headers {
		r.Header[name] = values
	}
	resp, err := t.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound && req.notFoundIsEmpty {
		return errNotFound
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	printedProgress := false
	for sc.Scan() {
		var e admin.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("unreadable answer (%s): %q", resp.Status, truncate(sc.Text(), 200))
		}
		switch {
		case e.Error != "":
			if resp.StatusCode == http.StatusNotFound {
				return fmt.Errorf("%w: %s", errNotFound, e.Error)
			}
			return errors.New(e.Error)
		case e.Session != nil:
			if err := out.session(*e.Session); err != nil {
				return err
			}
		case e.Result != nil:
			if printedProgress {
				fmt.Fprintln(progress)
			}
			return out.result(req.verb, *e.Result)
		case e.Progress > 0 && progress != nil:
			fmt.Fprintf(progress, "\rvisited %d entries", e.Progress)
			printedProgress = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the answer ended before its result (%s)", resp.Status)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// headerList is the repeatable -header flag.
type headerList []struct{ name, value string }

func (h *headerList) String() string { return strconv.Itoa(len(*h)) + " headers" }

func (h *headerList) Set(line string) error {
	name, value, ok := strings.Cut(line, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", line)
	}
	*h = append(*h, struct{ name, value string }{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}

// optionalBool is a bool flag that knows whether it was given.
type optionalBool struct{ set, value bool }

func (b *optionalBool) String() string   { return strconv.FormatBool(b.value) }
func (b *optionalBool) IsBoolFlag() bool { return true }

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	b.set, b.value = true, v
	return err
}

// progressTo is where progress goes: stderr if -progress, or if it was not
// given and stderr is a terminal.
func (o *options) progressTo(stderr io.Writer) io.Writer {
	if o.progress.set {
		if o.progress.value {
			return stderr
		}
		return nil
	}
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return stderr
		}
	}
	return nil
}
