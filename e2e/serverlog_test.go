package e2e

// The server's log under requests that make fasthttp quote what it read.
// The redaction itself is tested in kvfasthttp/redact_test.go; here it
// faces fasthttp's real messages, over loopback TCP.

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// leakedPiece returns a piece of secret of at least 20 characters that log
// contains, or "". A piece that long is 120 bits of a session id: enough to
// call the id leaked.
func leakedPiece(log, secret string) string {
	const piece = 20
	for i := 0; i+piece <= len(secret); i++ {
		if strings.Contains(log, secret[i:i+piece]) {
			return secret[i : i+piece]
		}
	}
	return ""
}

// sendRaw writes req on a new connection to addr, half-closes it (a client
// that went away) and reads until the server closes. fasthttp logs a
// failed connection before closing it, so the log is complete on return.
func sendRaw(t *testing.T, addr string, req []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		conn.Write(req) // the server may stop reading a request it refuses
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(io.Discard, conn) // until EOF, or a reset for unread bytes
	<-wrote
}

// loggedServer is one way of running a fasthttp.Server behind the
// middleware, with its log captured.
type loggedServer struct {
	name string
	// safe: the log must never show a session id; otherwise the server is
	// a control that must show one, or the requests prove nothing.
	safe bool
	make func(mw *kvfasthttp.Middleware, log *syncBuffer) *fasthttp.Server
}

var loggedServers = []loggedServer{
	{"NewServer", true, func(mw *kvfasthttp.Middleware, _ *syncBuffer) *fasthttp.Server {
		// Its log goes to Config.Logger, which writes to the buffer.
		return mw.NewServer(app)
	}},
	{"hand-made with Middleware.Logger and no SecureErrorLogMessage", true, func(mw *kvfasthttp.Middleware, log *syncBuffer) *fasthttp.Server {
		// The redaction alone, facing fasthttp's most talkative messages.
		return &fasthttp.Server{Handler: mw.Handler(app), ReadBufferSize: mw.NewServer(app).ReadBufferSize, Logger: mw.Logger(log)}
	}},
	{"control: hand-made with a bare logger", false, func(mw *kvfasthttp.Middleware, log *syncBuffer) *fasthttp.Server {
		return &fasthttp.Server{Handler: mw.Handler(app), ReadBufferSize: mw.NewServer(app).ReadBufferSize, Logger: log}
	}},
}

// TestServerLogNeverShowsSessionIDs sends, over loopback TCP, the requests
// that make fasthttp log what it read: a header cut off by a client that
// went away, cookie values holding bytes a header may not, headers larger
// than the server reads. Each carries a live session's cookie. Servers made
// by NewServer, or by hand with Middleware.Logger, must log no piece of it.
func TestServerLogNeverShowsSessionIDs(t *testing.T) {
	for _, backendName := range []string{"server", "cookie"} {
		t.Run(backendName, func(t *testing.T) {
			for _, ls := range loggedServers {
				t.Run(ls.name, func(t *testing.T) { testServerLog(t, backendName, ls) })
			}
		})
	}
}

func testServerLog(t *testing.T, backendName string, ls loggedServer) {
	log := &syncBuffer{}
	cfg := kvsession.Config{Logger: slog.New(slog.NewTextHandler(log, nil))}
	var b kvsession.Backend
	if backendName == "cookie" {
		b = sessiontest.NewCookieBackend(t, cfg)
	} else {
		reg := store.NewRegistry(nil)
		if err := reg.Register("sessions", memstore.New(memstore.Options{})); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
		sb, err := kvsession.New(cfg, reg)
		if err != nil {
			t.Fatal(err)
		}
		b = sb
	}
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(b, 0)})
	if err != nil {
		t.Fatal(err)
	}
	srv := ls.make(mw, log)
	// fasthttp leaves out some errors (oversized headers, unexpected EOF)
	// unless told otherwise: log them all, so that all are checked.
	srv.LogAllErrors = true
	addr := listen(t, srv)

	// A live session: its cookie is what a browser would send.
	resp, err := exchange(addr, counterRequest(""))
	if err != nil || resp == nil || resp.status != 200 {
		t.Fatalf("GET /counter: %v %v", resp, err)
	}
	var id string
	for _, line := range resp.header("Set-Cookie") {
		if v, ok := strings.CutPrefix(line, "session="); ok {
			id, _, _ = strings.Cut(v, ";")
		}
	}
	if len(id) < 22 {
		t.Fatalf("no session cookie in %q", resp.header("Set-Cookie"))
	}
	bufSize := srv.ReadBufferSize
	head := "GET /counter HTTP/1.1\r\nHost: example.test\r\n"
	// pad returns a cookie pair that brings a header of n bytes so far
	// to about size bytes.
	pad := func(n, size int) string { return "pad=" + strings.Repeat("p", max(size-n-len("pad=; "), 1)) + "; " }
	// cookieAt returns a header too large for the server whose session
	// cookie starts at offset.
	cookieAt := func(offset int) string {
		prefix := head + "Cookie: "
		prefix += pad(len(prefix), offset) + "session=" + id + "; "
		return prefix + pad(len(prefix), bufSize+100) + "\r\n\r\n"
	}
	half := len(id) / 2
	// tailFrom returns a header too large for the server in which the
	// session cookie starts at offset, after a long header of another
	// name: the Cookie line is not in what fasthttp quotes of its start.
	tailFrom := func(offset int) string {
		req := head + "X-Pad: "
		req += strings.Repeat("p", offset-len(req)-len("\r\nCookie: session=")) + "\r\nCookie: session=" + id + "; "
		return req + pad(len(req), bufSize+100) + "\r\n\r\n"
	}

	for _, tc := range []struct {
		name string
		req  string
	}{
		{"header cut off after the cookie", head + "Cookie: session=" + id + "\r\nUser-Agent: cur"},
		{"header cut off inside the cookie", head + "Cookie: other=1; session=" + id},
		{"header cut off, odd case", head + "cOOKIE:session=" + id + "\r\n"},
		{"control byte after the id", head + "Cookie: session=" + id + "\x01\r\n\r\n"},
		{"control byte inside the id", head + "Cookie: session=" + id[:half] + "\x01" + id[half:] + "\r\n\r\n"},
		{"DEL and NUL in another cookie", head + "Cookie: session=" + id + "; theme=da\x7frk\x00\r\n\r\n"},
		{"control byte before the name", head + "Cookie: \x01session=" + id + "\r\n\r\n"},
		{"oversized header, id at its start", head + "Cookie: session=" + id + "; " + pad(0, bufSize+100) + "\r\n\r\n"},
		{"oversized header, id across the end of what is read", cookieAt(bufSize - len("session=") - half)},
		{"oversized header, id across the start of the logged tail", cookieAt(bufSize - 200 - len("session=") - half)},
		{"oversized header, id at the end of what is read", cookieAt(bufSize - 150)},
		{"oversized header, the logged tail starts inside the id", tailFrom(bufSize - 200 - half)},
	} {
		before := len(log.String())
		sendRaw(t, addr, []byte(tc.req))
		got := log.String()[before:]
		// Something was logged about it, or the case checks nothing.
		if !strings.Contains(got, "error when serving connection") {
			t.Errorf("%s: nothing logged:\n%s", tc.name, got)
			continue
		}
		piece := leakedPiece(got, id)
		switch {
		case ls.safe && piece != "":
			t.Errorf("%s: the log shows %q of the session cookie:\n%s", tc.name, piece, got)
		case !ls.safe && piece == "":
			t.Errorf("%s: control server logged no piece of the cookie, so the case tests nothing:\n%s", tc.name, got)
		}
	}
	// The redaction leaves the rest of the message: the log still says
	// what went wrong.
	if ls.safe && !strings.Contains(log.String(), "error when reading request headers") {
		t.Errorf("the reason is gone from the log:\n%s", log.String())
	}
}
