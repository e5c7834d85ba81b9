// Package sessioncookie is the session cookie on the wire: its value read
// from a Cookie header, whole or joined from segments, and written as
// Set-Cookie lines with their attributes. It knows names, values and
// attributes only: neither sessions nor HTTP frameworks.
package sessioncookie

import (
	"bytes"
	"errors"
	"math/bits"
	"strconv"
)

// Splitting a cookie value that is too large for one browser cookie.
//
// The rule: every Set-Cookie line written (name, "=", value and every
// attribute) is at most MaxLineBytes. RFC 6265 §6.1 asks browsers to
// store cookies of at least 4096 bytes "as measured by the sum of the length
// of the cookie's name, value, and attributes", and that is the size they
// reliably keep. A value whose line fits keeps the bare name <key>. A larger
// value is cut into n segments named <key>-0 … <key>-(n-1), each carrying
// "<index>.<n>." before its share of the value, so that a reader notices a
// segment missing, extra, duplicated or moved to another name. Segments are
// joined by the number in their name, whatever order the Cookie header lists
// them in. Segments check structure only: the integrity of what they carry
// is the job of the payload (the cookie backend authenticates it).
//
// A response that writes the value expires, with the same Path and Domain,
// every cookie of the name the request carried and the response no longer
// uses: the bare one when the value moves to segments, the segments when it
// moves back or shrinks.

// MaxLineBytes is the largest Set-Cookie line the session cookies use.
const MaxLineBytes = 4096

// MaxSegments bounds how many segments a value may be split into
// (Config.MaxCookieSegments). 32 segments of 4 KB already make a 128 KB
// Cookie header, far beyond what proxies accept.
const MaxSegments = 32

// Ways a request's session cookies can be broken. Each makes the request
// start a fresh session.
var (
	errCookieDuplicate     = errors.New("kvsession: session cookie sent twice")
	errCookieSegmentName   = errors.New("kvsession: malformed session cookie segment name")
	errCookieSegmentBound  = errors.New("kvsession: session cookie segment beyond the configured maximum")
	errCookieBareAndSplit  = errors.New("kvsession: session cookie sent both whole and in segments")
	errCookieSegmentHeader = errors.New("kvsession: session cookie segment out of place or malformed")
	errCookieSegmentSet    = errors.New("kvsession: session cookie segment missing or extra")
)

// Carried records which cookies of the session's name a request carried.
type Carried struct {
	Bare bool   // <key>
	Segs uint32 // bit i: <key>-i
}

func (c Carried) Any() bool      { return c.Bare || c.Segs != 0 }
func (c Carried) Has(i int) bool { return c.Segs&(1<<i) != 0 }

// Sink receives the Set-Cookie lines a Splitter writes.
type Sink interface {
	// SetCookie replaces any cookie named name on the response with the
	// complete Set-Cookie header value line, which is only valid during
	// the call.
	SetCookie(name string, line []byte)
}

// Splitter reads and writes one cookie name's value, whole or in
// segments.
type Splitter struct {
	key   string
	names []string // "<key>-0" … "<key>-31", built once
	max   int      // most segments a value may take
}

// NewSplitter returns the Splitter of the cookie named key, whose values
// take at most max segments.
func NewSplitter(key string, max int) Splitter {
	// Names up to the limit, not just max: segments a deployment with a
	// larger maximum left behind must be expired too.
	sp := Splitter{key: key, max: max, names: make([]string, MaxSegments)}
	for i := range sp.names {
		sp.names[i] = key + "-" + strconv.Itoa(i)
	}
	return sp
}

// Read finds the cookies of the splitter's name in a Cookie header value and
// returns their value, joined into dst, and which of them the request
// carried. A broken set of segments is an error; so is the name sent twice.
// The cookie absent is no error and an empty value.
func (sp *Splitter) Read(dst, header []byte) ([]byte, Carried, error) {
	var (
		carried Carried
		bare    []byte
		err     error
	)
	fail := func(e error) {
		if err == nil {
			err = e
		}
	}
	for h := header; len(h) > 0; {
		var name, value []byte
		name, value, h = nextCookie(h)
		i, ours := sp.match(name)
		switch {
		case !ours:
		case i == bareCookie:
			if carried.Bare {
				fail(errCookieDuplicate)
			}
			carried.Bare, bare = true, value
		case i == badSegment || i >= MaxSegments:
			fail(errCookieSegmentName)
		case carried.Has(i):
			fail(errCookieDuplicate)
		default:
			carried.Segs |= 1 << i
			if i >= sp.max {
				fail(errCookieSegmentBound)
			}
		}
	}
	dst = dst[:0]
	switch {
	case err != nil:
		return dst, carried, err
	case carried.Segs == 0:
		return append(dst, bare...), carried, nil
	case carried.Bare:
		return dst, carried, errCookieBareAndSplit
	}
	dst, err = sp.join(dst, header, carried)
	return dst, carried, err
}

const (
	bareCookie = -1 // match: the cookie has the bare name
	badSegment = -2 // match: a segment name we never write
)

// match reports whether a cookie name is the splitter's, and which: the
// bare name, a segment index, or a malformed segment name. "<key>-id" and
// the like belong to someone else.
func (sp *Splitter) match(name []byte) (int, bool) {
	key := sp.key
	if len(name) < len(key) || string(name[:len(key)]) != key {
		return 0, false
	}
	if len(name) == len(key) {
		return bareCookie, true
	}
	i, ours, ok := segmentIndex(name[len(key):])
	if !ours {
		return 0, false
	}
	if !ok {
		return badSegment, true
	}
	return i, true
}

// join checks and concatenates the segments of a header whose names Read
// already found to be exactly a set of distinct indexes below the maximum.
func (sp *Splitter) join(dst, header []byte, carried Carried) ([]byte, error) {
	var segs [MaxSegments][]byte
	for h := header; len(h) > 0; {
		var name, value []byte
		name, value, h = nextCookie(h)
		if i, ours := sp.match(name); ours && i >= 0 && i < len(segs) {
			segs[i] = value
		}
	}
	if !carried.Has(0) {
		return dst, errCookieSegmentSet
	}
	// Read refused any index at or over max, so every segment fits segs.
	n, payload, ok := segmentPayload(segs[0], 0)
	if !ok || n < 2 || n > sp.max {
		return dst, errCookieSegmentHeader
	}
	if carried.Segs != 1<<n-1 {
		return dst, errCookieSegmentSet
	}
	dst = append(dst, payload...)
	for i := 1; i < n; i++ {
		m, payload, ok := segmentPayload(segs[i], i)
		if !ok || m != n {
			return dst[:0], errCookieSegmentHeader
		}
		dst = append(dst, payload...)
	}
	return dst, nil
}

// nextCookie splits the first name=value pair off a Cookie header value,
// unquoting the value. A pair without "=" comes back with a nil name.
func nextCookie(header []byte) (name, value, rest []byte) {
	pair := header
	if i := bytes.IndexByte(header, ';'); i >= 0 {
		pair, rest = header[:i], header[i+1:]
	}
	if i := bytes.IndexByte(pair, '='); i >= 0 {
		name, value = trimSpace(pair[:i]), trimSpace(pair[i+1:])
		// RFC 6265 allows the value in double quotes.
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		return name, value, rest
	}
	return nil, nil, rest
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// segmentIndex parses the "-<i>" after the cookie key. ours is false when
// the suffix is not "-" and digits (the cookie belongs to someone else); ok
// is false for digits we never write (a leading zero, or too many).
func segmentIndex(suffix []byte) (i int, ours, ok bool) {
	if len(suffix) < 2 || suffix[0] != '-' {
		return 0, false, false
	}
	digits := suffix[1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	if (len(digits) > 1 && digits[0] == '0') || len(digits) > 3 {
		return 0, true, false
	}
	for _, c := range digits {
		i = i*10 + int(c-'0')
	}
	return i, true, true
}

// segmentPayload checks that a segment's value starts "<index>.<n>." and
// returns n and what follows.
func segmentPayload(v []byte, index int) (n int, payload []byte, ok bool) {
	i, v, ok := leadingNumber(v)
	if !ok || i != index {
		return 0, nil, false
	}
	n, v, ok = leadingNumber(v)
	return n, v, ok
}

// leadingNumber parses "<decimal>." (no leading zero, at most 3 digits).
func leadingNumber(v []byte) (int, []byte, bool) {
	n := 0
	for i, c := range v {
		switch {
		case c == '.' && i > 0:
			return n, v[i+1:], true
		case c < '0' || c > '9' || i == 3 || (i == 1 && v[0] == '0'):
			return 0, nil, false
		}
		n = n*10 + int(c-'0')
	}
	return 0, nil, false
}

// Count returns how many cookies a value of valueLen bytes takes when every
// line carries attrsLen bytes of attributes: 1 for the bare cookie, n ≥ 2
// for segments, 0 when more than the maximum would be needed.
func (sp *Splitter) Count(valueLen, attrsLen int) int {
	if len(sp.key)+1+valueLen+attrsLen <= MaxLineBytes {
		return 1
	}
	for n := 2; n <= sp.max; n++ {
		total := 0
		for i := 0; i < n; i++ {
			c := sp.capacity(i, n, attrsLen)
			if c <= 0 {
				return 0
			}
			total += c
		}
		if total >= valueLen {
			return n
		}
	}
	return 0
}

// capacity is how many value bytes segment i of n can carry.
func (sp *Splitter) capacity(i, n, attrsLen int) int {
	header := decimalLen(i) + 1 + decimalLen(n) + 1
	return MaxLineBytes - len(sp.names[i]) - 1 - header - attrsLen
}

func decimalLen(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// Write sets value as n cookies (n from Count) with the given attributes,
// then expires, with expiredAttrs, every cookie the request carried that the
// response no longer uses. line is scratch space, returned for reuse.
func (sp *Splitter) Write(sink Sink, line, value []byte, n int, attrs, expiredAttrs []byte, carried Carried) []byte {
	if n == 1 {
		line = appendCookieLine(line[:0], sp.key, value, attrs)
		sink.SetCookie(sp.key, line)
	} else {
		rest := value
		for i := 0; i < n; i++ {
			chunk := rest[:min(sp.capacity(i, n, len(attrs)), len(rest))]
			rest = rest[len(chunk):]
			line = append(line[:0], sp.names[i]...)
			line = append(line, '=')
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, '.')
			line = strconv.AppendInt(line, int64(n), 10)
			line = append(line, '.')
			line = append(line, chunk...)
			line = append(line, attrs...)
			sink.SetCookie(sp.names[i], line)
		}
		if carried.Bare {
			line = appendCookieLine(line[:0], sp.key, nil, expiredAttrs)
			sink.SetCookie(sp.key, line)
		}
	}
	first := n
	if n == 1 {
		first = 0
	}
	return sp.expireSegments(sink, line, first, expiredAttrs, carried)
}

// Expire expires every cookie of the name the request carried.
func (sp *Splitter) Expire(sink Sink, line, expiredAttrs []byte, carried Carried) []byte {
	if carried.Bare {
		line = appendCookieLine(line[:0], sp.key, nil, expiredAttrs)
		sink.SetCookie(sp.key, line)
	}
	return sp.expireSegments(sink, line, 0, expiredAttrs, carried)
}

// expireSegments expires the segments from index from on that the request
// carried. It walks the set bits, not the 32 names: nearly every request
// carries none.
func (sp *Splitter) expireSegments(sink Sink, line []byte, from int, expiredAttrs []byte, carried Carried) []byte {
	for segs := carried.Segs >> from << from; segs != 0; segs &= segs - 1 {
		i := bits.TrailingZeros32(segs)
		line = appendCookieLine(line[:0], sp.names[i], nil, expiredAttrs)
		sink.SetCookie(sp.names[i], line)
	}
	return line
}

// ExpiresAny reports whether writing the value as n cookies leaves any
// carried cookie to expire.
func (sp *Splitter) ExpiresAny(n int, carried Carried) bool {
	if n == 1 {
		return carried.Segs != 0
	}
	return carried.Bare || carried.Segs>>n != 0
}

func appendCookieLine(line []byte, name string, value, attrs []byte) []byte {
	line = append(line, name...)
	line = append(line, '=')
	line = append(line, value...)
	return append(line, attrs...)
}
