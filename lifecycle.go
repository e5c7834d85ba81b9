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

// ttl is how long, from now, the session lives if saved now: its MaxAge,
// cut to IdleTimeout and to what AbsoluteTimeout leaves. Never below a
// millisecond, since a store reads 0 as "no expiry".
func (c *core) ttl(s *Session, now int64) time.Duration {
	d := c.maxAgeOf(s)
	if idle := c.cfg.IdleTimeout; idle > 0 && idle < d {
		d = idle
	}
	if abs := c.cfg.AbsoluteTimeout; abs > 0 && s.created != 0 {
		if left := time.Duration(s.created + int64(abs) - now); left < d {
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
	if c.cfg.AbsoluteTimeout <= 0 && c.cfg.IdleTimeout <= 0 {
		return false
	}
	now := s.nowNano()
	if abs := c.cfg.AbsoluteTimeout; abs > 0 && s.created != 0 && now >= s.created+int64(abs) {
		return true
	}
	if idle := c.cfg.IdleTimeout; idle > 0 {
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
	return c.cfg.IdleTimeout > 0 && now-s.extended >= int64(c.cfg.ExtensionDelay)
}

// rotationDue reports whether a stored session's id is due for rotation.
func (c *core) rotationDue(s *Session, now int64) bool {
	if c.cfg.RotationInterval <= 0 || !s.exists {
		return false
	}
	since := max(s.created, s.rotated)
	return now-since >= int64(c.cfg.RotationInterval)
}
