package kvsession

import (
	"time"
)

// cookieMode is a session's own choice of cookie lifetime, kept in its
// record (Session.SetBrowserSession).
type cookieMode uint8

const (
	cookieDefault     cookieMode = iota // as Config.BrowserSession says
	cookieKeep                          // persistent: Max-Age and Expires
	cookieBrowserOnly                   // no Max-Age: gone when the browser closes
)

// lifetimeOf returns the kind of cookie the session gets.
func (c *core) lifetimeOf(s *Session) cookieLifetime {
	switch s.cookieMode {
	case cookieKeep:
		return cookiePersistent
	case cookieBrowserOnly:
		return cookieBrowserSession
	}
	return c.lifetime()
}

// maxAgeOf returns the session's own MaxAge, or the configured one.
// A lifetime set under a higher Config.MaxAgeLimit than today's is cut to
// today's: lowering the limit bounds every session, not only new ones.
func (c *core) maxAgeOf(s *Session) time.Duration {
	if s.maxAge > 0 {
		return min(time.Duration(s.maxAge), c.cfg.MaxAgeLimit)
	}
	return c.cfg.MaxAge
}

// idleOf, absoluteOf and rotationOf return the session's own timeout
// (Session.SetIdleTimeout, ...), or the configured one. As with maxAgeOf,
// one set under a higher limit than today's is cut to today's.
func (c *core) idleOf(s *Session) time.Duration {
	return ownOr(s.ownIdle, c.cfg.IdleTimeoutLimit, c.cfg.IdleTimeout)
}

func (c *core) absoluteOf(s *Session) time.Duration {
	return ownOr(s.ownAbsolute, c.cfg.AbsoluteTimeoutLimit, c.cfg.AbsoluteTimeout)
}

func (c *core) rotationOf(s *Session) time.Duration {
	return ownOr(s.ownRotation, c.cfg.RotationIntervalLimit, c.cfg.RotationInterval)
}

func ownOr(own int64, limit, configured time.Duration) time.Duration {
	if own > 0 {
		return min(time.Duration(own), limit)
	}
	return configured
}

// extensionDelayOf is how long after its last save or extension the
// session's idle deadline, idle (idleOf), is pushed back. Config's
// ExtensionDelay is chosen against Config's IdleTimeout: a session with
// its own idle timeout keeps the same proportion, so that a short one is
// still extended before it runs out (a 5-minute one under 30 minutes
// with a 3-minute delay gets 30 seconds), and the writes it costs and the
// idle time it may lose stay the trade-off the Config made. Without a
// configured IdleTimeout, the proportion is ExtensionDelay's default, a
// tenth.
func (c *core) extensionDelayOf(s *Session, idle time.Duration) time.Duration {
	cfgIdle := c.cfg.IdleTimeout
	switch {
	case s.ownIdle <= 0 || idle == cfgIdle:
		return c.cfg.ExtensionDelay
	case cfgIdle <= 0:
		return idle / 10
	}
	// In floating point: the product of two durations overflows int64.
	d := time.Duration(float64(idle) * (float64(c.cfg.ExtensionDelay) / float64(cfgIdle)))
	return min(max(d, 1), idle-1)
}

// ttl is how long, from now, the session lives if saved now: its MaxAge,
// cut to its idle timeout and to what its absolute timeout leaves. Never
// below a millisecond, since a store reads 0 as "no expiry".
//
// A session not saved yet is taken as created at now: the save that
// creates it stamps it so, and a cookie or deadline worked out before
// that save must count the absolute timeout as the record will.
func (c *core) ttl(s *Session, now int64) time.Duration {
	d := c.maxAgeOf(s)
	if idle := c.idleOf(s); idle > 0 && idle < d {
		d = idle
	}
	if abs := c.absoluteOf(s); abs > 0 {
		created := s.created
		if created == 0 {
			created = now
		}
		if left := time.Duration(created + int64(abs) - now); left < d {
			d = left
		}
	}
	return max(d, time.Millisecond)
}

// expired reports whether a loaded session is past its absolute or idle
// deadline. Store TTLs enforce both too, but only to the store's precision
// (Badger's is a second), and a cookie can be replayed: this check is
// exact. It reads the clock only if a deadline is configured.
func (c *core) expired(s *Session) bool {
	abs, idle := c.absoluteOf(s), c.idleOf(s)
	if abs <= 0 && idle <= 0 {
		return false
	}
	now := s.nowNano()
	if abs > 0 && s.created != 0 && now >= s.created+int64(abs) {
		return true
	}
	if idle > 0 {
		last := s.extended
		if last == 0 {
			last = s.created // a record written before extensions were kept
		}
		if last != 0 && now >= last+int64(idle) {
			return true
		}
	}
	return false
}

// extensionDue reports whether a session used now should have its idle
// deadline pushed back, which costs a write.
func (c *core) extensionDue(s *Session, now int64) bool {
	idle := c.idleOf(s)
	return idle > 0 && now-s.extended >= int64(c.extensionDelayOf(s, idle))
}

// rotationDue reports whether a stored session's id is due for rotation.
func (c *core) rotationDue(s *Session, now int64) bool {
	every := c.rotationOf(s)
	if every <= 0 || !s.exists {
		return false
	}
	since := max(s.created, s.rotated)
	return now-since >= int64(every)
}

// Deadline returns when the session ends if no request comes before: the
// earliest of its MaxAge (its own, if SetMaxAge gave it one), its idle
// timeout after its last extension, and its absolute timeout after its
// creation (its own, if SetIdleTimeout or SetAbsoluteTimeout gave it one;
// else Config's). It is
// what to show a user as "you will be logged out at ...".
//
// It is the deadline the session has once this request's response is
// written, judged from the session as it is when Deadline is called. If
// the response will write the session with a fresh expiry (it was
// changed, or ExtendOnAccess, a due idle extension or a due id rotation
// renews it), MaxAge and the idle clock count from this request, as the
// response's cookie and store TTL will; otherwise it is the deadline its
// last write left, which the store's TTL or the sealed cookie holds
// already. A handler that changes the session after calling Deadline may
// move it: call it once the handler's writes are done. A browser-session
// cookie (SetBrowserSession) can end the session sooner, when the browser
// closes.
//
// It is the zero time for a session that holds nothing (the response
// keeps nothing), or whose load failed.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil || s.empty() {
		return time.Time{}
	}
	now := s.nowNano()
	from := now
	if !s.e.renews(s, now) {
		from = s.extended
		if from == 0 {
			from = s.created // a record written before extensions were kept
		}
	}
	return time.Unix(0, from+int64(s.c.ttl(s, from)))
}

// IsNew reports whether the session is a fresh one: the request carried
// no session that could be loaded (no cookie, or one that was unknown,
// expired, destroyed or would not open). It stays true once the handler
// writes to the session, and false for a loaded session even after
// Destroy or RenewID: it describes what the request brought, not what the
// response will keep. It is false if the load failed.
func (s *Session) IsNew() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load() == nil && !s.resumed
}

// renews mirrors storeInResponse: whether a response written at now saves,
// extends or rotates the session, so that its expiry counts from now.
func (b *ServerBackend) renews(s *Session, now int64) bool {
	if s.failed != nil {
		return false // a failed Destroy: nothing is written
	}
	return s.modified || (b.cfg.ExtendOnAccess && s.exists) ||
		b.extensionDue(s, now) || b.rotationDue(s, now)
}

// renews mirrors the cookie backend's StoreInResponse: whether the
// response seals the session anew, with an expiry counted from now.
func (b *CookieBackend) renews(s *Session, now int64) bool {
	return s.modified || b.cfg.ExtendOnAccess || s.secret != 0 || b.extensionDue(s, now)
}
