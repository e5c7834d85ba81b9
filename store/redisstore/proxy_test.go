package redisstore

import (
	"net"
	"sync"
	"testing"
)

// proxy forwards loopback connections to a Redis server and can stop
// forwarding, which to a client looks like a server that has stopped
// answering. Unlike CLIENT PAUSE it slows down only the clients that go
// through it, so tests of other packages sharing the server are not held up.
type proxy struct {
	addr     string
	upstream string
	l        net.Listener

	mu       sync.Mutex
	open     chan struct{} // closed while traffic flows
	conns    []net.Conn
	accepted int // client connections so far
	wg       sync.WaitGroup
}

// startProxy starts a proxy to upstream, stopped when t ends.
func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), upstream: upstream, l: l, open: make(chan struct{})}
	close(p.open)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.accepted++
		p.mu.Unlock()
		p.wg.Go(func() { p.forward(u, c) })
		p.wg.Go(func() { p.forward(c, u) })
	}
}

// forward copies src to dst, holding each chunk while the proxy is frozen.
func (p *proxy) forward(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// connections returns how many client connections the proxy has accepted.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *proxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// freeze stops forwarding: what either side sends is held until thaw.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default: // already frozen
	}
}

// thaw forwards again, starting with what was held.
func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

func (p *proxy) close() {
	p.l.Close()
	p.thaw()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
