package kvsession

import (
	"fmt"
	"time"
)

// Per-session timeouts: a handler may give one session timeouts of its own
// (an administrator's session idling out sooner than everyone else's). They
// are kept in the session's record, so they hold on every later request,
// and each is bounded by its limit in Config, checked when it is set and
// again whenever it is used, so that lowering a limit bounds the sessions
// that were given more.

// SetIdleTimeout gives this session an idle timeout of its own: it ends
// when unused for d, instead of Config.IdleTimeout (which may be off). Use
// extends it, as it extends Config's, at most once per an ExtensionDelay
// scaled to d (Config.ExtensionDelay/Config.IdleTimeout of d, or a tenth of
// d if Config has no IdleTimeout). 0 returns to Config.IdleTimeout. Values
// below a second or above Config.IdleTimeoutLimit are errors, as is any
// value but 0 with Config.ExtendOnAccess, which renews sessions on every
// request instead.
func (s *Session) SetIdleTimeout(d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d != 0 && s.c.cfg.ExtendOnAccess {
		return fmt.Errorf("kvsession: SetIdleTimeout(%v): Config.ExtendOnAccess renews the session on every request; it cannot be combined with an idle timeout", d)
	}
	return s.setTimeout(&s.ownIdle, d, "SetIdleTimeout", "IdleTimeoutLimit", s.c.cfg.IdleTimeoutLimit)
}

// SetAbsoluteTimeout gives this session an absolute timeout of its own: it
// ends d after it was created, however active, instead of
// Config.AbsoluteTimeout (which may be off). A d shorter than the session's
// age ends it: the next request finds no session. 0 returns to
// Config.AbsoluteTimeout. Values below a second or above
// Config.AbsoluteTimeoutLimit are errors.
func (s *Session) SetAbsoluteTimeout(d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setTimeout(&s.ownAbsolute, d, "SetAbsoluteTimeout", "AbsoluteTimeoutLimit", s.c.cfg.AbsoluteTimeoutLimit)
}

// SetRotationInterval gives this session an id rotation period of its own:
// its id is rotated d after it was created or last rotated, instead of
// Config.RotationInterval (which may be off). 0 returns to
// Config.RotationInterval. Values below a second or above
// Config.RotationIntervalLimit are errors. The cookie backend, whose
// sessions have no id, refuses any value but 0.
func (s *Session) SetRotationInterval(d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, cookie := s.e.(cookieEngine); cookie && d != 0 {
		return fmt.Errorf("kvsession: SetRotationInterval(%v): cookie sessions have no id to rotate", d)
	}
	return s.setTimeout(&s.ownRotation, d, "SetRotationInterval", "RotationIntervalLimit", s.c.cfg.RotationIntervalLimit)
}

// setTimeout sets one of the session's own timeouts, with s.mu held.
func (s *Session) setTimeout(own *int64, d time.Duration, method, limitField string, limit time.Duration) error {
	if err := s.load(); err != nil {
		return err
	}
	if d != 0 && (d < time.Second || d > limit) {
		return fmt.Errorf("kvsession: %s(%v): outside 1s to Config.%s (%v)", method, d, limitField, limit)
	}
	if *own != int64(d) {
		*own = int64(d)
		s.modified = true
	}
	return nil
}

// IdleTimeout returns the idle timeout that applies to this session: its
// own (SetIdleTimeout), cut to Config.IdleTimeoutLimit, or
// Config.IdleTimeout. 0: none. It is 0 if the load failed.
func (s *Session) IdleTimeout() time.Duration {
	return s.timeout((*core).idleOf)
}

// AbsoluteTimeout returns the absolute timeout that applies to this
// session: its own (SetAbsoluteTimeout), cut to
// Config.AbsoluteTimeoutLimit, or Config.AbsoluteTimeout. 0: none. It is 0
// if the load failed.
func (s *Session) AbsoluteTimeout() time.Duration {
	return s.timeout((*core).absoluteOf)
}

// RotationInterval returns the id rotation period that applies to this
// session: its own (SetRotationInterval), cut to
// Config.RotationIntervalLimit, or Config.RotationInterval. 0: none, as
// always with the cookie backend. It is 0 if the load failed.
func (s *Session) RotationInterval() time.Duration {
	return s.timeout((*core).rotationOf)
}

func (s *Session) timeout(of func(*core, *Session) time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return 0
	}
	return of(s.c, s)
}
