package kvsession

import (
	"crypto/sha256"
	"errors"
	"time"
	"unsafe"

	"github.com/kvsession/kvsession/internal/msgp"
)

// A store holds two kinds of record under a session's key: the session
// record (its envelope, below, around the values the Codec encoded), and,
// for RotationGrace after a rotation, the forward record that leads the old
// id to the new one.

// recordVersion is the first field of every stored record. A reader meeting
// another version treats the record as unreadable and starts a fresh
// session rather than misreading it.
const recordVersion = 1

// decode parses a record:
//
//	[version, created, {name: bin, ...}, user, extended, rotated, maxAge, cookieMode, 0, indexed, bound, [[kind, message], ...], [idle, absolute, rotation], handle, [userAgent, remoteAddr], ...]
//
// Records with only the first three or four fields (as kvsession wrote
// them before) read with the others zero, as do records written before a
// later field was added: one without the twelfth, the flash messages
// (flash.go), reads with none, and encode leaves it out when there are
// none; one without the thirteenth, the session's own timeouts in ns
// (Session.SetIdleTimeout, ...), reads with Config's, and encode leaves
// it out when the session has none of its own (an array holding more
// than three is read for its first three). The fourteenth is the
// session's handle (handle.go), the fifteenth the client recorded at
// login; encode writes each only when there is one. Fields after the
// fifteenth are skipped so
// that a later version can add bookkeeping without breaking an older
// reader; a reader from before flashes skips them the same way, and drops
// them if it saves the session. The ninth field is what the client's
// session cookie says (cookieExp, cookierefresh.go). It was the coverage
// of the per-user index record that per-user sets replaced, in unix ns:
// such a value reads as "unknown", and a reader from before reads and
// drops the field, as it always did.
func (s *Session) decode(rec []byte) error {
	if len(rec) > s.c.cfg.MaxRecordBytes {
		return ErrSessionTooLarge
	}
	r := msgp.NewReader(rec)
	// Up to fifteen fields the header is one byte; a later version with
	// more will write an array16 header, which this reader accepts now.
	fields, err := r.ArrayHeader()
	if err != nil || fields < 3 || fields > 0xff {
		return errBadRecord
	}
	version, err := r.Int()
	if err != nil {
		return err
	}
	if version != recordVersion {
		return errBadRecord
	}
	if s.created, err = r.Int(); err != nil {
		return err
	}
	n, err := r.MapHeader()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		name, err := r.Str()
		if err != nil {
			return err
		}
		raw, err := r.Bin()
		if err != nil {
			return err
		}
		s.entries = append(s.entries, entry{name: bytesToString(name), raw: raw})
	}
	if hasDuplicateNames(s.entries) {
		return errDuplicateName
	}
	if fields >= 4 {
		user, err := r.Str()
		if err != nil {
			return err
		}
		if len(user) > maxUserBytes {
			return errBadRecord
		}
		s.user = bytesToString(user)
	}
	if fields >= 8 {
		if s.extended, err = r.Int(); err != nil {
			return err
		}
		if s.rotated, err = r.Int(); err != nil {
			return err
		}
		if s.maxAge, err = r.Int(); err != nil {
			return err
		}
		mode, err := r.Int()
		if err != nil {
			return err
		}
		if mode < 0 || mode > int64(cookieBrowserOnly) || s.maxAge < 0 || s.maxAge > int64(MaxMaxAge) {
			return errBadRecord
		}
		s.cookieMode = cookieMode(mode)
	}
	if fields >= 9 {
		v, err := r.Int()
		if err != nil {
			return err
		}
		// What the retired index coverage left here (unix ns) reads as
		// "unknown", as does anything no cookie expiry in seconds can be.
		if v >= -1 && v < maxCookieExpiry {
			s.cookieExp = v
		}
	}
	if fields >= 10 {
		if s.indexed, err = r.Int(); err != nil {
			return err
		}
	}
	if fields >= 11 {
		if s.bound, err = r.Int(); err != nil {
			return err
		}
	}
	if fields >= 12 {
		if err := s.readFlashes(&r); err != nil {
			return err
		}
	}
	if fields >= 13 {
		if err := s.readTimeouts(&r); err != nil {
			return err
		}
	}
	if fields >= 14 {
		if err := s.readHandle(&r); err != nil {
			return err
		}
	}
	if fields >= 15 {
		if err := s.readClientInfo(&r); err != nil {
			return err
		}
	}
	for i := recordFields; i < fields; i++ {
		if err := r.Skip(0); err != nil {
			return err
		}
	}
	if !r.Done() {
		return msgp.ErrTrailing
	}
	return nil
}

var (
	errBadRecord     = errors.New("kvsession: not a session record of a known version")
	errDuplicateName = errors.New("kvsession: session record holds a key twice")
)

// hasDuplicateNames reports whether two entries share a name. We never write
// such a record; one that has it was tampered with, and would make Get and
// Delete disagree about which value a key means.
func hasDuplicateNames(entries []entry) bool {
	if len(entries) <= 16 {
		for i := 1; i < len(entries); i++ {
			for j := 0; j < i; j++ {
				if entries[i].name == entries[j].name {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		if _, dup := seen[e.name]; dup {
			return true
		}
		seen[e.name] = struct{}{}
	}
	return false
}

// bytesToString views b as a string without copying. Only used on the
// loaded record, which is not written to while the session is in use.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// recordFields is how many fields encode writes at most. The ones after
// the eleventh are written only when the session has something to put
// there: the flash messages, the session's own timeouts, its handle (every
// server session has one; a cookie session never does), and the client
// the application recorded. Fields are positional: a later field forces
// the earlier ones, as an empty array of flashes and a [0, 0, 0] of
// timeouts (which every reader since the timeouts reads as "Config's").
const recordFields = 15

// recordFieldsOf is how many fields encode writes for s.
func (s *Session) recordFieldsOf() int {
	switch {
	case s.userAgent != "" || s.remoteAddr != "":
		return 15
	case s.handle != [handleBytes]byte{}:
		return 14
	case s.ownIdle != 0 || s.ownAbsolute != 0 || s.ownRotation != 0:
		return 13
	case len(s.flashes) != 0:
		return 12
	}
	return 11
}

func (s *Session) encode(dst []byte) []byte {
	fields := s.recordFieldsOf()
	dst = append(dst, 0x90|byte(fields), recordVersion)
	dst = msgp.AppendInt(dst, s.created)
	dst = msgp.AppendMapHeader(dst, len(s.entries))
	for _, e := range s.entries {
		dst = msgp.AppendString(dst, e.name)
		dst = msgp.AppendBinHeader(dst, len(e.raw))
		dst = append(dst, e.raw...)
	}
	dst = msgp.AppendString(dst, s.user)
	dst = msgp.AppendInt(dst, s.extended)
	dst = msgp.AppendInt(dst, s.rotated)
	dst = msgp.AppendInt(dst, s.maxAge)
	dst = msgp.AppendInt(dst, int64(s.cookieMode))
	dst = msgp.AppendInt(dst, s.cookieExp)
	dst = msgp.AppendInt(dst, s.indexed)
	dst = msgp.AppendInt(dst, s.bound)
	if fields < 12 {
		return dst
	}
	dst = s.appendFlashes(dst)
	if fields < 13 {
		return dst
	}
	dst = append(dst, 0x93)
	dst = msgp.AppendInt(dst, s.ownIdle)
	dst = msgp.AppendInt(dst, s.ownAbsolute)
	dst = msgp.AppendInt(dst, s.ownRotation)
	if fields < 14 {
		return dst
	}
	dst = msgp.AppendBinHeader(dst, handleBytes)
	dst = append(dst, s.handle[:]...)
	if fields < 15 {
		return dst
	}
	dst = append(dst, 0x92)
	dst = msgp.AppendString(dst, s.userAgent)
	return msgp.AppendString(dst, s.remoteAddr)
}

// readHandle reads the record's fourteenth field.
func (d *sessionData) readHandle(r *msgp.Reader) error {
	h, err := r.Bin()
	if err != nil {
		return err
	}
	if len(h) != handleBytes {
		return errBadRecord
	}
	copy(d.handle[:], h)
	return nil
}

// readClientInfo reads the record's fifteenth field, as views of the
// record.
func (d *sessionData) readClientInfo(r *msgp.Reader) error {
	if n, err := r.ArrayHeader(); err != nil || n != 2 {
		return errBadRecord
	}
	ua, err := r.Str()
	if err != nil {
		return err
	}
	addr, err := r.Str()
	if err != nil {
		return err
	}
	if len(ua) > maxUserAgentBytes || len(addr) > maxRemoteAddrBytes {
		return errBadRecord
	}
	d.userAgent, d.remoteAddr = bytesToString(ua), bytesToString(addr)
	return nil
}

// readTimeouts reads the record's thirteenth field. A timeout no setter
// writes (negative, or under the setters' second) makes the record
// unreadable.
func (s *Session) readTimeouts(r *msgp.Reader) error {
	if r.Skip4(0x93, 0, 0, 0) {
		return nil // none of its own: what every save of such a session writes
	}
	n, err := r.ArrayHeader()
	if err != nil {
		return err
	}
	if n < 3 {
		return errBadRecord
	}
	if s.ownIdle, err = r.Int(); err != nil {
		return err
	}
	if s.ownAbsolute, err = r.Int(); err != nil {
		return err
	}
	if s.ownRotation, err = r.Int(); err != nil {
		return err
	}
	if !ownTimeoutOK(s.ownIdle) || !ownTimeoutOK(s.ownAbsolute) || !ownTimeoutOK(s.ownRotation) {
		return errBadRecord
	}
	for range n - 3 {
		if err := r.Skip(0); err != nil {
			return err
		}
	}
	return nil
}

// ownTimeoutOK reports whether d (ns) is a session's own timeout a setter
// could have written: none (0), or at least a second.
func ownTimeoutOK(d int64) bool { return d == 0 || d >= int64(time.Second) }

var errBadForward = errors.New("kvsession: malformed forward record")

// forwardMarker starts a forward record. 0xc1 is never used by msgpack, so
// no session record starts with it.
const forwardMarker = 0xc1

// isForward reports whether rec is a forward record rather than a session
// record.
func isForward(rec []byte) bool { return len(rec) > 0 && rec[0] == forwardMarker }

// appendForward appends the forward record that leads oldID to newID: the
// marker, then newID sealed with a pad drawn from oldID, so that the record
// alone gives no usable id away.
func appendForward(dst []byte, newID, oldID string) []byte {
	dst = append(dst, forwardMarker)
	sealed := len(dst)
	dst = append(dst, newID...)
	xorPad(dst[sealed:], oldID)
	return dst
}

// readForward opens, in place, the forward record rec found under oldID
// and returns the id it leads to. That id is idLen bytes, but whether it
// is a well-formed id is the caller's to check.
func readForward(rec, oldID []byte, idLen int) ([]byte, error) {
	if len(rec) != 1+idLen || rec[0] != forwardMarker {
		return nil, errBadForward
	}
	xorPad(rec[1:], string(oldID))
	return rec[1:], nil
}

// xorPad XORs p with a pad drawn from id by SHA-256 in counter mode.
func xorPad(p []byte, id string) {
	var in [2*maxSessionIDBytes + 32]byte
	n := copy(in[:], "kvsession forward\x00")
	n += copy(in[n:], id)
	for block := 0; len(p) > 0; block++ {
		in[n] = byte(block)
		pad := sha256.Sum256(in[:n+1])
		k := min(len(pad), len(p))
		for i := range k {
			p[i] ^= pad[i]
		}
		p = p[k:]
	}
}

// decodeOrForget decodes a loaded record into the session. An unreadable
// one is logged and leaves the session fresh and empty.
func (s *Session) decodeOrForget(rec []byte) bool {
	if err := s.decode(rec); err != nil {
		s.forget()
		s.c.cfg.Logger.Warn("kvsession: unreadable session record; starting a fresh session", "error", err, "bytes", len(rec))
		return false
	}
	return true
}
