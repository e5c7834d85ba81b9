package kvsession

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvsession/kvsession/internal/msgp"
)

// Flash is a message for the user's next page: "Saved.", "Wrong password."
// Kind is what the application makes of it, such as "info" or "error".
type Flash struct {
	Kind    string
	Message string
}

// DefaultFlashKind is the Kind of a flash added without one.
const DefaultFlashKind = "info"

// The flash limits bound what a handler that flashes user input can make
// the session hold: every flash travels in the record (or the cookie)
// until it is read.
const (
	maxFlashes           = 32      // messages waiting at once
	maxFlashMessageBytes = 4 << 10 // one message
	maxFlashKindBytes    = 64      // one kind
)

// ErrFlashLimit is returned (wrapped) by AddFlash for a message or kind
// longer than the limit, or when the session already holds as many
// unread flashes as it may. The session is left as it was.
var ErrFlashLimit = errors.New("kvsession: flash message limit")

// AddFlash queues a message for Flashes to hand out, on this request or a
// later one. kind is optional, DefaultFlashKind if left out; more than one
// is an error. Flashes are kept apart from the session's values: Keys,
// Len, Has and Delete do not see them, and Clear and Destroy drop them. A
// session holding only flashes is saved, so a visitor with no session yet
// gets one.
//
// At most 32 flashes wait at once, each message at most 4 KiB and each
// kind at most 64 bytes; beyond that AddFlash returns ErrFlashLimit.
func (s *Session) AddFlash(message string, kind ...string) error {
	k := DefaultFlashKind
	switch len(kind) {
	case 0:
	case 1:
		k = kind[0]
	default:
		return fmt.Errorf("kvsession: AddFlash given %d kinds, want at most one", len(kind))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	switch {
	case len(message) > maxFlashMessageBytes:
		return fmt.Errorf("%w: message of %d bytes is longer than %d", ErrFlashLimit, len(message), maxFlashMessageBytes)
	case len(k) > maxFlashKindBytes:
		return fmt.Errorf("%w: kind of %d bytes is longer than %d", ErrFlashLimit, len(k), maxFlashKindBytes)
	case len(s.flashes) >= maxFlashes:
		return fmt.Errorf("%w: %d flashes already wait to be read", ErrFlashLimit, maxFlashes)
	}
	// Copies: the caller's strings may be views of a request buffer
	// (fasthttp's), reused before the session is written.
	s.flashes = append(s.flashes, Flash{Kind: strings.Clone(k), Message: strings.Clone(message)})
	s.modified = true
	return nil
}

// Flashes returns the flashes added on earlier requests and on this one,
// oldest first, and removes them: each is handed out once. The removal is
// saved with the response. With none waiting it returns nil and changes
// nothing, so a page that always asks costs no write.
func (s *Session) Flashes() []Flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil || len(s.flashes) == 0 {
		return nil
	}
	out := make([]Flash, len(s.flashes))
	for i, f := range s.flashes {
		// Copies: a loaded flash is a view of the record, whose buffer
		// the next request reuses.
		out[i] = Flash{Kind: strings.Clone(f.Kind), Message: strings.Clone(f.Message)}
	}
	s.dropFlashes()
	s.modified = true
	return out
}

// dropFlashes forgets the waiting flashes, keeping the buffer.
func (d *sessionData) dropFlashes() {
	clear(d.flashes)
	d.flashes = d.flashes[:0]
}

// appendFlashes appends the record's flash field: an array of
// [kind, message] pairs.
func (d *sessionData) appendFlashes(dst []byte) []byte {
	dst = msgp.AppendArrayHeader(dst, len(d.flashes))
	for _, f := range d.flashes {
		dst = append(dst, 0x92)
		dst = msgp.AppendString(dst, f.Kind)
		dst = msgp.AppendString(dst, f.Message)
	}
	return dst
}

// readFlashes reads the record's flash field, as views of the record. A
// field AddFlash could not have written is an unreadable record.
func (d *sessionData) readFlashes(r *msgp.Reader) error {
	n, err := r.ArrayHeader()
	if err != nil {
		return err
	}
	if n > maxFlashes {
		return errBadRecord
	}
	for range n {
		if pair, err := r.ArrayHeader(); err != nil || pair != 2 {
			return errBadRecord
		}
		kind, err := r.Str()
		if err != nil {
			return err
		}
		message, err := r.Str()
		if err != nil {
			return err
		}
		if len(kind) > maxFlashKindBytes || len(message) > maxFlashMessageBytes {
			return errBadRecord
		}
		d.flashes = append(d.flashes, Flash{Kind: bytesToString(kind), Message: bytesToString(message)})
	}
	return nil
}
