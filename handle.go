package kvsession

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"unicode/utf8"
)

// A session's handle names it where its id must not appear: on a user's
// "where you're logged in" page (UserSessions, DestroyUserSession), in an
// operator's listing (Sessions, DestroySession) and in the admin command's
// output. Anyone who sees an id can take the session over; a handle gives
// nothing away. It is random, drawn with the session's first id (newID),
// kept in the record, and stays the same for the session's whole life,
// through RenewID and rotations: a user who picks "end this one" while the
// session rotates still ends it. A record from before handles, or one
// written by the by-id Set under an id it was given, gets a handle drawn
// from its store key by SHA-256 instead (deriveHandle), so that the handle
// a listing shows is the one its next save keeps.

// handleBytes is how long a handle is: 96 bits, so that no two of a
// store's sessions share one.
const handleBytes = 12

// handleLen is the length of a handle in its text form.
var handleLen = base64.RawURLEncoding.EncodedLen(handleBytes)

// ErrInvalidHandle is returned for a handle that is not of the form
// Session.Handle returns.
var ErrInvalidHandle = errors.New("kvsession: malformed session handle")

// deriveHandle gives s a handle from its current store key, if it has
// none yet: a session whose record predates handles when it is loaded,
// and one saved under an id the by-id Set was given. Neither the key nor
// the id can be worked back from it.
func deriveHandle(s *Session) {
	if s.handle == [handleBytes]byte{} && s.key != "" {
		deriveHandleFromKey(s)
	}
}

func deriveHandleFromKey(s *Session) {
	var small [128]byte
	in := append(append(small[:0], "kvsession handle\x00"...), s.key...)
	sum := sha256.Sum256(in)
	copy(s.handle[:], sum[:])
}

// handleString is the text form of a handle.
func handleString(h [handleBytes]byte) string {
	if h == [handleBytes]byte{} {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// parseHandle reads the text form of a handle.
func parseHandle(s string) ([handleBytes]byte, error) {
	var h [handleBytes]byte
	if len(s) != handleLen {
		return h, ErrInvalidHandle
	}
	if n, err := base64.RawURLEncoding.Decode(h[:], []byte(s)); err != nil || n != handleBytes || h == [handleBytes]byte{} {
		return [handleBytes]byte{}, ErrInvalidHandle
	}
	return h, nil
}

// Handle returns the session's handle: a name for it that is safe to show,
// log and put in a URL, unlike its id, and that stays the same for the
// session's whole life (RenewID and rotations included). Compare it with
// the Handle of each SessionInfo that UserSessions lists to mark "this
// device". A session not yet saved has none (""), nor does a session of
// the cookie backend, which keeps no server-side record to name.
func (s *Session) Handle() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return ""
	}
	return handleString(s.handle)
}

// The bounds on what SetClientInfo keeps, which travels in every save of
// the record: a user agent is cut at maxUserAgentBytes.
const (
	maxUserAgentBytes  = 256
	maxRemoteAddrBytes = 64
)

// ErrServerOnly is returned by the Session methods that only a server
// backend session supports.
var ErrServerOnly = errors.New("kvsession: only a session of the server backend can do this")

// SetClientInfo records the client the session belongs to, for the
// user's "where you're logged in" page (UserSessions): its User-Agent
// (cut to 256 bytes) and its address (at most 64 bytes; longer is an
// error). It is opt-in: kvsession records nothing about the client unless
// the application calls this, typically at login, and keeps it until it
// is called again (empty strings forget it). Both are personal data: the
// application decides whether to keep them, and says so to its users.
// The cookie backend has no such page and returns ErrServerOnly.
func (s *Session) SetClientInfo(userAgent, remoteAddr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	if _, ok := s.e.(serverEngine); !ok {
		return ErrServerOnly
	}
	if len(remoteAddr) > maxRemoteAddrBytes {
		return errors.New("kvsession: client address longer than 64 bytes")
	}
	if len(userAgent) > maxUserAgentBytes {
		cut := maxUserAgentBytes
		for cut > 0 && !utf8.RuneStart(userAgent[cut]) {
			cut--
		}
		userAgent = userAgent[:cut]
	}
	if userAgent != s.userAgent || remoteAddr != s.remoteAddr {
		s.userAgent, s.remoteAddr = userAgent, remoteAddr
		s.modified = true
	}
	return nil
}

// ClientInfo returns what SetClientInfo recorded, or empty strings.
func (s *Session) ClientInfo() (userAgent, remoteAddr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return "", ""
	}
	return s.userAgent, s.remoteAddr
}
