package kvsession

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// This file holds the few MessagePack primitives the hot path needs: writing
// and reading scalars and headers without a Decoder, and a bounded walk that
// checks a value's structure before any decoder allocates for it.

var (
	errTruncated  = errors.New("kvsession: truncated msgpack value")
	errBadCode    = errors.New("kvsession: invalid msgpack code")
	errTooDeep    = errors.New("kvsession: msgpack value nested too deeply")
	errTooLong    = errors.New("kvsession: msgpack length exceeds the data")
	errNotScalar  = errors.New("kvsession: msgpack value has another type")
	errTrailing   = errors.New("kvsession: trailing bytes after msgpack value")
	errOutOfRange = errors.New("kvsession: integer out of range")
)

// maxDepth bounds nesting so a hostile value of a million one-byte array
// headers cannot exhaust the stack of a recursive decoder.
const maxDepth = 64

const (
	mpNil     = 0xc0
	mpFalse   = 0xc2
	mpTrue    = 0xc3
	mpBin8    = 0xc4
	mpBin16   = 0xc5
	mpBin32   = 0xc6
	mpFloat32 = 0xca
	mpFloat64 = 0xcb
	mpUint8   = 0xcc
	mpUint16  = 0xcd
	mpUint32  = 0xce
	mpUint64  = 0xcf
	mpInt8    = 0xd0
	mpInt16   = 0xd1
	mpInt32   = 0xd2
	mpInt64   = 0xd3
	mpStr8    = 0xd9
	mpStr16   = 0xda
	mpStr32   = 0xdb
	mpArray16 = 0xdc
	mpArray32 = 0xdd
	mpMap16   = 0xde
	mpMap32   = 0xdf
)

// appendInt writes n with a signed encoding only, so that a reader decoding
// "loosely" always gets int64 back for a Go signed integer.
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= -32 && n <= 127:
		return append(b, byte(n))
	case n >= math.MinInt8 && n <= math.MaxInt8:
		return append(b, mpInt8, byte(n))
	case n >= math.MinInt16 && n <= math.MaxInt16:
		return binary.BigEndian.AppendUint16(append(b, mpInt16), uint16(n))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(b, mpInt32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, mpInt64), uint64(n))
}

// appendUint always writes an unsigned code, so unsigned values come back as
// uint64 rather than as the int64 a positive fixint would give.
func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, mpUint8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpUint16), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, mpUint32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, mpUint64), n)
}

func appendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, mpStr8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpStr16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, mpStr32), uint32(n))
}

func appendString(b []byte, s string) []byte {
	return append(appendStrHeader(b, len(s)), s...)
}

// appendBin writes v as a bin value.
func appendBin(b, v []byte) []byte { return append(appendBinHeader(b, len(v)), v...) }

func appendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, mpBin8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpBin16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, mpBin32), uint32(n))
}

func appendArrayHeader(b []byte, n int) []byte { return appendContainerHeader(b, n, 0x90, mpArray16) }

func appendMapHeader(b []byte, n int) []byte { return appendContainerHeader(b, n, 0x80, mpMap16) }

// appendContainerHeader writes an array's or a map's length: in the fix
// code for fewer than 16, else in code16 or the 32-bit code after it.
func appendContainerHeader(b []byte, n int, fix, code16 byte) []byte {
	switch {
	case n < 16:
		return append(b, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, code16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, code16+1), uint32(n))
}

// reader walks a byte slice; every read checks bounds and never allocates.
type reader struct {
	b   []byte
	pos int

	// stamps lists the offsets of timestamps skip found whose payload
	// begins like a 32-bit array or map header; see checkExt.
	stamps []int
}

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *reader) next(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.pos {
		return nil, errTruncated
	}
	p := r.b[r.pos : r.pos+n]
	r.pos += n
	return p, nil
}

// uintN reads a big-endian unsigned integer of size bytes (1, 2, 4 or 8).
func (r *reader) uintN(size int) (uint64, error) {
	p, err := r.next(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// length reads a length of size bytes and checks that at least
// minPer*length bytes remain, so no caller allocates for a length the data
// cannot hold.
func (r *reader) length(size, minPer int) (int, error) {
	n, err := r.uintN(size)
	if err != nil {
		return 0, err
	}
	if n > uint64(len(r.b)-r.pos)/uint64(minPer) {
		return 0, errTooLong
	}
	return int(n), nil
}

// strLike reads the payload of a str (str=true) or bin value.
func (r *reader) strLike(str bool) ([]byte, error) {
	c, err := r.byte()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case str && c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case (str && c == mpStr8) || (!str && c == mpBin8):
		n, err = r.length(1, 1)
	case (str && c == mpStr16) || (!str && c == mpBin16):
		n, err = r.length(2, 1)
	case (str && c == mpStr32) || (!str && c == mpBin32):
		n, err = r.length(4, 1)
	default:
		return nil, errNotScalar
	}
	if err != nil {
		return nil, err
	}
	return r.next(n)
}

// mapHeader reads a map header and returns its entry count.
func (r *reader) mapHeader() (int, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x80 && c <= 0x8f:
		n := int(c & 0x0f)
		if n > (len(r.b)-r.pos)/2 {
			return 0, errTooLong
		}
		return n, nil
	case c == mpMap16:
		return r.length(2, 2)
	case c == mpMap32:
		return r.length(4, 2)
	}
	return 0, errNotScalar
}

// int reads any MessagePack integer that fits in an int64.
func (r *reader) int() (int64, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	switch c {
	case mpInt8, mpInt16, mpInt32, mpInt64:
		size := 1 << (c - mpInt8)
		u, err := r.uintN(size)
		if err != nil {
			return 0, err
		}
		switch size {
		case 1:
			return int64(int8(u)), nil
		case 2:
			return int64(int16(u)), nil
		case 4:
			return int64(int32(u)), nil
		}
		return int64(u), nil
	case mpUint8, mpUint16, mpUint32, mpUint64:
		u, err := r.uintN(1 << (c - mpUint8))
		if err != nil {
			return 0, err
		}
		if u > math.MaxInt64 {
			return 0, errOutOfRange
		}
		return int64(u), nil
	}
	r.pos--
	return 0, errNotScalar
}

// skip moves past one complete value, checking every length against the
// bytes that remain and nesting against maxDepth.
func (r *reader) skip(depth int) error {
	if depth > maxDepth {
		return errTooDeep
	}
	c, err := r.byte()
	if err != nil {
		return err
	}
	var n, elems int
	switch {
	case c <= 0x7f || c >= 0xe0 || c == mpNil || c == mpFalse || c == mpTrue:
		return nil
	case c >= 0x80 && c <= 0x8f:
		elems = 2 * int(c&0x0f)
	case c >= 0x90 && c <= 0x9f:
		elems = int(c & 0x0f)
	case c >= 0xa0 && c <= 0xbf:
		_, err = r.next(int(c & 0x1f))
		return err
	default:
		switch c {
		case mpBin8, mpStr8:
			n, err = r.length(1, 1)
		case mpBin16, mpStr16:
			n, err = r.length(2, 1)
		case mpBin32, mpStr32:
			n, err = r.length(4, 1)
		case 0xc7, 0xc8, 0xc9: // ext 8/16/32: length, type byte, data
			if n, err = r.length(1<<(c-0xc7), 1); err != nil {
				return err
			}
			return r.checkExt(r.pos-1-1<<(c-0xc7), n, false, depth)
		case mpFloat32:
			n = 4
		case mpFloat64:
			n = 8
		case mpUint8, mpUint16, mpUint32, mpUint64:
			n = 1 << (c - mpUint8)
		case mpInt8, mpInt16, mpInt32, mpInt64:
			n = 1 << (c - mpInt8)
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16: type byte, data
			return r.checkExt(r.pos-1, 1<<(c-0xd4), true, depth)
		case mpArray16:
			elems, err = r.length(2, 1)
		case mpArray32:
			elems, err = r.length(4, 1)
		case mpMap16:
			elems, err = r.length(2, 2)
			elems *= 2
		case mpMap32:
			elems, err = r.length(4, 2)
			elems *= 2
		default:
			return errBadCode
		}
		if err != nil {
			return err
		}
		if elems == 0 {
			_, err = r.next(n)
			return err
		}
	}
	if elems > len(r.b)-r.pos {
		return errTooLong
	}
	isMap := (c >= 0x80 && c <= 0x8f) || c == mpMap16 || c == mpMap32
	for i := 0; i < elems; i++ {
		// A container as a map key decodes into nothing Go can hash, and
		// msgpack's reflection panics on it; refuse it here.
		if isMap && i%2 == 0 && r.pos < len(r.b) && isContainer(r.b[r.pos]) {
			return errBadMapKey
		}
		if err := r.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func isContainer(c byte) bool {
	return (c >= 0x80 && c <= 0x9f) || (c >= mpArray16 && c <= mpMap32)
}

// checkExt skips an extension's type byte and n bytes of payload; start is
// the offset of its code, fixed whether it is a fixext.
//
// msgpack's decoder, asked for a map where an extension stands, steps over
// the extension header and reads the payload as the map, and whatever
// follows as its entries, none of which this walk has checked as such. So a
// payload that begins like a map must be exactly one well-formed value, or
// be a timestamp, which is noted in r.stamps for rewriting into a form that
// cannot begin like a map.
func (r *reader) checkExt(start, n int, fixed bool, depth int) error {
	typ, err := r.byte()
	if err != nil {
		return err
	}
	payload, err := r.next(n)
	if err != nil || n == 0 || !isMapCode(payload[0]) {
		return err
	}
	if int8(typ) == -1 && fixed && (n == 4 || n == 8) {
		r.stamps = append(r.stamps, start)
		return nil
	}
	inner := reader{b: payload}
	// Timestamps inside would need rewriting, which would change this
	// extension's length: refuse them too.
	if inner.skip(depth+1) != nil || inner.pos != n || inner.stamps != nil {
		return errBadExt
	}
	return nil
}

func isMapCode(c byte) bool { return (c >= 0x80 && c <= 0x8f) || c == mpMap16 || c == mpMap32 }

var errBadExt = errors.New("kvsession: msgpack extension whose data begins like a map but is not one")

// rewriteStamps returns a copy of b with the timestamps at the given
// offsets re-encoded in the 12-byte form, whose payload starts with the
// nanoseconds' top byte (always below 0x3c) and so never begins like a map.
func rewriteStamps(b []byte, stamps []int) []byte {
	out := make([]byte, 0, len(b)+10*len(stamps))
	last := 0
	for _, at := range stamps {
		out = append(out, b[last:at]...)
		var sec int64
		var nsec uint32
		if b[at] == 0xd6 { // fixext4: seconds
			sec = int64(binary.BigEndian.Uint32(b[at+2:]))
			last = at + 6
		} else { // fixext8: nanoseconds<<34 | seconds
			v := binary.BigEndian.Uint64(b[at+2:])
			sec, nsec = int64(v&(1<<34-1)), uint32(v>>34)
			last = at + 10
		}
		out = append(out, 0xc7, 12, 0xff)
		out = binary.BigEndian.AppendUint32(out, nsec)
		out = binary.BigEndian.AppendUint64(out, uint64(sec))
	}
	return append(out, b[last:]...)
}

// validate checks that b holds exactly one well-formed value.
func validate(b []byte) error {
	_, err := validated(b)
	return err
}

// validated checks b like validate and returns it ready for msgpack's
// decoder: b itself, or a rewritten copy if it holds timestamps that
// decoder could misread (see checkExt).
func validated(b []byte) ([]byte, error) {
	r := reader{b: b}
	if err := r.skip(0); err != nil {
		return nil, err
	}
	if r.pos != len(b) {
		return nil, errTrailing
	}
	if r.stamps != nil {
		b = rewriteStamps(b, r.stamps)
	}
	return b, nil
}

// anyValue decodes one value generically. Integers that fit come back as
// int64 whatever code carried them (msgpack's reflection encoder writes a
// positive Go int with an unsigned code), so callers meet one integer type.
// Every length was checked by validate before this runs.
func (r *reader) anyValue() (any, error) {
	c := r.b[r.pos]
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= mpInt8 && c <= mpInt64):
		return r.int()
	case c >= mpUint8 && c <= mpUint64:
		r.pos++
		u, err := r.uintN(1 << (c - mpUint8))
		if u <= math.MaxInt64 {
			return int64(u), err
		}
		return u, err
	case c == mpNil:
		r.pos++
		return nil, nil
	case c == mpTrue || c == mpFalse:
		r.pos++
		return c == mpTrue, nil
	case c == mpFloat64:
		r.pos++
		u, err := r.uintN(8)
		return math.Float64frombits(u), err
	case c == mpFloat32:
		r.pos++
		u, err := r.uintN(4)
		return math.Float32frombits(uint32(u)), err
	case (c >= 0xa0 && c <= 0xbf) || c == mpStr8 || c == mpStr16 || c == mpStr32:
		s, err := r.strLike(true)
		return string(s), err
	case c == mpBin8 || c == mpBin16 || c == mpBin32:
		b, err := r.strLike(false)
		return append([]byte(nil), b...), err
	case (c >= 0x90 && c <= 0x9f) || c == mpArray16 || c == mpArray32:
		n, err := r.arrayHeader()
		if err != nil {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = r.anyValue(); err != nil {
				return nil, err
			}
		}
		return out, nil
	case (c >= 0x80 && c <= 0x8f) || c == mpMap16 || c == mpMap32:
		n, err := r.mapHeader()
		if err != nil {
			return nil, err
		}
		return r.mapValue(n)
	}
	return r.extValue()
}

func (r *reader) arrayHeader() (int, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), nil
	case c == mpArray16:
		return r.length(2, 1)
	case c == mpArray32:
		return r.length(4, 1)
	}
	return 0, errNotScalar
}

// mapValue decodes n entries as map[string]any, or as map[any]any once a
// key that is not a string appears.
func (r *reader) mapValue(n int) (any, error) {
	m := make(map[string]any, n)
	var other map[any]any
	for i := 0; i < n; i++ {
		k, err := r.anyValue()
		if err != nil {
			return nil, err
		}
		v, err := r.anyValue()
		if err != nil {
			return nil, err
		}
		ks, isString := k.(string)
		if isString && other == nil {
			m[ks] = v
			continue
		}
		if other == nil {
			other = make(map[any]any, n)
			for ks, vv := range m {
				other[ks] = vv
			}
		}
		switch k.(type) {
		case []any, map[string]any, map[any]any, []byte:
			return nil, errBadMapKey
		}
		other[k] = v
	}
	if other != nil {
		return other, nil
	}
	return m, nil
}

var errBadMapKey = errors.New("kvsession: msgpack map key of a type Go cannot use as a map key")

// extValue decodes the MessagePack timestamp extension (type -1), which is
// how time.Time is stored. Other extension types need Session.Decode into
// the registered Go type.
func (r *reader) extValue() (any, error) {
	c, err := r.byte()
	if err != nil {
		return nil, err
	}
	var n int
	switch c {
	case 0xd6:
		n = 4
	case 0xd7:
		n = 8
	case 0xc7:
		if n, err = r.length(1, 1); err != nil {
			return nil, err
		}
	default:
		return nil, errBadCode
	}
	typ, err := r.byte()
	if err != nil {
		return nil, err
	}
	p, err := r.next(n)
	if err != nil {
		return nil, err
	}
	if int8(typ) != -1 {
		return nil, fmt.Errorf("kvsession: msgpack extension type %d: decode it with Session.Decode", int8(typ))
	}
	switch n {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(p)), 0), nil
	case 8:
		v := binary.BigEndian.Uint64(p)
		return time.Unix(int64(v&(1<<34-1)), int64(v>>34)), nil
	case 12:
		return time.Unix(int64(binary.BigEndian.Uint64(p[4:])), int64(binary.BigEndian.Uint32(p[:4]))), nil
	}
	return nil, errBadCode
}
