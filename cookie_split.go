package kvsession

import (
	"bytes"
	"errors"
	"math/bits"
	"strconv"
)

// Splitting a cookie value that is too large for one browser cookie.
//
// The rule: every Set-Cookie line written (name, "=", value and every
// attribute) is at most MaxCookieLineBytes. RFC 6265 §6.1 asks browsers to
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

// MaxCookieLineBytes is the largest Set-Cookie line the session cookies use.
const MaxCookieLineBytes = 4096

// maxCookieSegmentsLimit bounds Config.MaxCookieSegments. 32 segments of
// 4 KB already make a 128 KB Cookie header, far beyond what proxies accept.
const maxCookieSegmentsLimit = 32

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

// cookieSet records which cookies of the session's name a request carried.
type cookieSet struct {
	bare bool
	segs uint32 // bit i: <key>-i
}

func (c cookieSet) any() bool      { return c.bare || c.segs != 0 }
func (c cookieSet) has(i int) bool { return c.segs&(1<<i) != 0 }

// cookieSplitter reads and writes one cookie name's value, whole or in
// segments.
type cookieSplitter struct {
	key   string
	names []string // "<key>-0" … "<key>-31", built once
	max   int      // most segments a value may take
}

func newCookieSplitter(key string, max int) cookieSplitter {
	// Names up to the limit, not just max: segments a deployment with a
	// larger maximum left behind must be expired too.
	sp := cookieSplitter{key: key, max: max, names: make([]string, maxCookieSegmentsLimit)}
	for i := range sp.names {
		sp.names[i] = key + "-" + strconv.Itoa(i)
	}
	return sp
}

// read finds the cookies of the splitter's name in a Cookie header value and
// returns their value, joined into dst, and which of them the request
// carried. A broken set of segments is an error; so is the name sent twice.
// The cookie absent is no error and an empty value.
func (sp *cookieSplitter) read(dst, header []byte) ([]byte, cookieSet, error) {
	var (
		carried cookieSet
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
			if carried.bare {
				fail(errCookieDuplicate)
			}
			carried.bare, bare = true, value
		case i == badSegment || i >= maxCookieSegmentsLimit:
			fail(errCookieSegmentName)
		case carried.has(i):
			fail(errCookieDuplicate)
		default:
			carried.segs |= 1 << i
			if i >= sp.max {
				fail(errCookieSegmentBound)
			}
		}
	}
	dst = dst[:0]
	switch {
	case err != nil:
		return dst, carried, err
	case carried.segs == 0:
		return append(dst, bare...), carried, nil
	case carried.bare:
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
func (sp *cookieSplitter) match(name []byte) (int, bool) {
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

// join checks and concatenates the segments of a header whose names read
// already found to be exactly a set of distinct indexes below the maximum.
func (sp *cookieSplitter) join(dst, header []byte, carried cookieSet) ([]byte, error) {
	var segs [maxCookieSegmentsLimit][]byte
	for h := header; len(h) > 0; {
		var name, value []byte
		name, value, h = nextCookie(h)
		if i, ours := sp.match(name); ours && i >= 0 && i < len(segs) {
			segs[i] = value
		}
	}
	if !carried.has(0) {
		return dst, errCookieSegmentSet
	}
	// read refused any index at or over max, so every segment fits segs.
	n, payload, ok := segmentPayload(segs[0], 0)
	if !ok || n < 2 || n > sp.max {
		return dst, errCookieSegmentHeader
	}
	if carried.segs != 1<<n-1 {
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

// count returns how many cookies a value of valueLen bytes takes when every
// line carries attrsLen bytes of attributes: 1 for the bare cookie, n ≥ 2
// for segments, 0 when more than the maximum would be needed.
func (sp *cookieSplitter) count(valueLen, attrsLen int) int {
	if len(sp.key)+1+valueLen+attrsLen <= MaxCookieLineBytes {
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
func (sp *cookieSplitter) capacity(i, n, attrsLen int) int {
	header := decimalLen(i) + 1 + decimalLen(n) + 1
	return MaxCookieLineBytes - len(sp.names[i]) - 1 - header - attrsLen
}

func decimalLen(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// write sets value as n cookies (n from count) with the given attributes,
// then expires, with expiredAttrs, every cookie the request carried that the
// response no longer uses. line is scratch space, returned for reuse.
func (sp *cookieSplitter) write(sink ResponseSink, line, value []byte, n int, attrs, expiredAttrs []byte, carried cookieSet) []byte {
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
		if carried.bare {
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

// expire expires every cookie of the name the request carried.
func (sp *cookieSplitter) expire(sink ResponseSink, line, expiredAttrs []byte, carried cookieSet) []byte {
	if carried.bare {
		line = appendCookieLine(line[:0], sp.key, nil, expiredAttrs)
		sink.SetCookie(sp.key, line)
	}
	return sp.expireSegments(sink, line, 0, expiredAttrs, carried)
}

// expireSegments expires the segments from index from on that the request
// carried. It walks the set bits, not the 32 names: nearly every request
// carries none.
func (sp *cookieSplitter) expireSegments(sink ResponseSink, line []byte, from int, expiredAttrs []byte, carried cookieSet) []byte {
	for segs := carried.segs >> from << from; segs != 0; segs &= segs - 1 {
		i := bits.TrailingZeros32(segs)
		line = appendCookieLine(line[:0], sp.names[i], nil, expiredAttrs)
		sink.SetCookie(sp.names[i], line)
	}
	return line
}

// expiresAny reports whether writing the value as n cookies leaves any
// carried cookie to expire.
func (sp *cookieSplitter) expiresAny(n int, carried cookieSet) bool {
	if n == 1 {
		return carried.segs != 0
	}
	return carried.bare || carried.segs>>n != 0
}

func appendCookieLine(line []byte, name string, value, attrs []byte) []byte {
	line = append(line, name...)
	line = append(line, '=')
	line = append(line, value...)
	return append(line, attrs...)
}
