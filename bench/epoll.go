package main

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// runLoad sends rt's request from conns keep-alive connections for d, each
// connection cycling through its own slice of clients so that no two
// requests for one session are ever in flight at once. With check unset
// (bare servers) bodies are not inspected.
//
// One goroutine on one OS thread drives every connection through an epoll
// set of its own, the way wrk does: a request costs a write and a read
// system call, and each epoll_wait collects many replies. Go's per-
// connection goroutines cost a failed read, a park and a wake-up more per
// request, which on one core made the generator, not the server, the limit.
func runLoad(addr string, conns int, clients []client, rt route, d time.Duration, check bool) *loadResult {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(clients) > 0 && conns > len(clients) {
		conns = len(clients) // every connection needs a client of its own
	}
	res := &loadResult{}
	fail := func(err error) {
		res.errors++
		if res.firstErr == nil {
			res.firstErr = err
		}
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		fail(err)
		return res
	}
	defer syscall.Close(epfd)

	type econn struct {
		nc      net.Conn // kept so the descriptor stays open
		fd      int
		in      inbuf
		req     []byte
		mine    []client
		next    int
		cl      *client
		sent    time.Time
		waiting bool
	}
	byFD := map[int]*econn{}
	connect := func(c *econn) error {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		raw, err := nc.(*net.TCPConn).SyscallConn()
		if err != nil {
			nc.Close()
			return err
		}
		raw.Control(func(fd uintptr) { c.fd = int(fd) })
		c.nc = nc
		c.in.reset()
		byFD[c.fd] = c
		return syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, c.fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)})
	}
	disconnect := func(c *econn) {
		syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
		delete(byFD, c.fd)
		c.nc.Close()
		c.waiting = false
	}
	// now is read once per epoll wake-up: every reply in a batch arrived by
	// then, and every request sent in it leaves after. That halves the
	// clock reads and errs by the batch's processing time at most.
	var now time.Time
	send := func(c *econn) error {
		c.cl = nil
		if len(c.mine) > 0 {
			c.cl = &c.mine[c.next%len(c.mine)]
			c.next++
		}
		c.req = appendRequest(c.req[:0], rt.method, rt.path, c.cl)
		c.sent = now
		for p := c.req; len(p) > 0; {
			n, err := rawWrite(c.fd, p)
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				runtime.Gosched()
				continue
			}
			if err != nil {
				return err
			}
			p = p[n:]
		}
		res.bytesOut += uint64(len(c.req))
		c.waiting = true
		return nil
	}

	all := make([]*econn, conns)
	for w := range all {
		c := &econn{req: make([]byte, 0, 512)}
		if len(clients) > 0 {
			c.mine = clients[w*len(clients)/conns : (w+1)*len(clients)/conns]
		}
		all[w] = c
		if err := connect(c); err != nil {
			fail(err)
			return res
		}
	}
	start := time.Now()
	now = start
	stopAt, giveUp := start.Add(d), start.Add(d+10*time.Second)
	for _, c := range all {
		if err := send(c); err != nil {
			fail(err)
		}
	}
	events := make([]syscall.EpollEvent, conns)
	inFlight := func() (n int) {
		for _, c := range all {
			if c.waiting {
				n++
			}
		}
		return n
	}
	stopping := false
	for {
		if !stopping && now.After(stopAt) {
			stopping = true
			res.elapsed = now.Sub(start)
		}
		if stopping && (inFlight() == 0 || now.After(giveUp)) {
			break
		}
		n, err := syscall.EpollWait(epfd, events, 50)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			fail(err)
			break
		}
		now = time.Now()
		for _, ev := range events[:max(n, 0)] {
			c := byFD[int(ev.Fd)]
			if c == nil || !c.waiting {
				continue
			}
			got, err := rawRead(c.fd, c.in.space())
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			if err == nil && got == 0 {
				err = errors.New("connection closed by server")
			}
			var r response
			if err == nil {
				res.bytesIn += uint64(got)
				c.in.end += got
				r, err = c.in.next(c.cl)
			}
			if err == nil && !r.complete {
				continue // more to come
			}
			res.requests++
			res.hist.add(now.Sub(c.sent))
			switch {
			case err != nil:
				fail(err)
			case r.status != 200:
				fail(fmt.Errorf("status %d: %.80q", r.status, r.body))
			default:
				var before int64
				if c.cl != nil {
					before = c.cl.want // the check moves it on
				}
				if !check || rt.check(c.cl, r.body) {
					res.ok++
					break
				}
				res.wrong++
				if res.firstErr == nil {
					res.firstErr = fmt.Errorf("wrong %s reply %.40q: the server had acknowledged %d", rt.name, r.body, before)
				}
			}
			c.waiting = false
			if err != nil || !r.keepAlive {
				disconnect(c)
				if stopping {
					continue
				}
				if err := connect(c); err != nil {
					fail(err)
					continue
				}
			}
			if stopping {
				continue
			}
			if err := send(c); err != nil {
				fail(err)
				disconnect(c)
			}
		}
	}
	if res.elapsed == 0 {
		res.elapsed = time.Since(start)
	}
	for _, c := range all {
		if c.waiting {
			fail(errors.New("no reply within 10s of the end of the run"))
		}
		if _, open := byFD[c.fd]; open {
			disconnect(c)
		}
	}
	return res
}

// rawRead and rawWrite skip the scheduler's bookkeeping around a system
// call (entersyscall, exitsyscall): on a non-blocking socket neither can
// block, and this thread is the generator's alone.
func rawRead(fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
