package msgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Reader walks a byte slice; every read checks bounds and never allocates.
type Reader struct {
	b   []byte
	pos int

	// stamps lists the offsets of timestamps Skip found whose payload
	// begins like a 32-bit array or map header; see checkExt.
	stamps []int
}

func NewReader(b []byte) Reader { return Reader{b: b} }

// ReadInt reads data as exactly one integer.
func ReadInt(data []byte) (int64, error) {
	r := Reader{b: data}
	n, err := r.Int()
	if err == nil && r.pos != len(data) {
		err = ErrTrailing
	}
	return n, err
}

// ReadAny decodes data, which must be exactly one well-formed value,
// generically. Integers that fit come back as int64 whatever code carried
// them (msgpack's reflection encoder writes a positive Go int with an
// unsigned code), so callers meet one integer type.
func ReadAny(data []byte) (any, error) {
	if err := Validate(data); err != nil {
		return nil, err
	}
	r := Reader{b: data}
	return r.anyValue()
}

// Done reports whether every byte has been read.
func (r *Reader) Done() bool { return r.pos == len(r.b) }

func (r *Reader) Byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, ErrTruncated
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *Reader) next(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.pos {
		return nil, ErrTruncated
	}
	p := r.b[r.pos : r.pos+n]
	r.pos += n
	return p, nil
}

// uintN reads a big-endian unsigned integer of size bytes (1, 2, 4 or 8).
func (r *Reader) uintN(size int) (uint64, error) {
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
func (r *Reader) length(size, minPer int) (int, error) {
	n, err := r.uintN(size)
	if err != nil {
		return 0, err
	}
	if n > uint64(len(r.b)-r.pos)/uint64(minPer) {
		return 0, ErrTooLong
	}
	return int(n), nil
}

// Str reads a str value's payload: a view of the Reader's bytes.
func (r *Reader) Str() ([]byte, error) {
	// A fixstr, nearly every key and short value, without a call.
	if pos := r.pos; pos < len(r.b) {
		if c := r.b[pos]; c >= 0xa0 && c <= 0xbf {
			end := pos + 1 + int(c&0x1f)
			if end > len(r.b) {
				return nil, ErrTruncated
			}
			r.pos = end
			return r.b[pos+1 : end], nil
		}
	}
	return r.strLike(true)
}

// Bin reads a bin value's payload: a view of the Reader's bytes.
func (r *Reader) Bin() ([]byte, error) {
	// A bin8, every value under 256 bytes, without a call.
	if pos := r.pos; pos+1 < len(r.b) && r.b[pos] == Bin8 {
		end := pos + 2 + int(r.b[pos+1])
		if end > len(r.b) {
			return nil, ErrTruncated
		}
		r.pos = end
		return r.b[pos+2 : end], nil
	}
	return r.strLike(false)
}

// strLike reads the payload of a str (str=true) or bin value.
func (r *Reader) strLike(str bool) ([]byte, error) {
	c, err := r.Byte()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case str && c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case (str && c == Str8) || (!str && c == Bin8):
		n, err = r.length(1, 1)
	case (str && c == Str16) || (!str && c == Bin16):
		n, err = r.length(2, 1)
	case (str && c == Str32) || (!str && c == Bin32):
		n, err = r.length(4, 1)
	default:
		return nil, ErrNotScalar
	}
	if err != nil {
		return nil, err
	}
	return r.next(n)
}

// MapHeader reads a map header and returns its entry count.
func (r *Reader) MapHeader() (int, error) {
	c, err := r.Byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x80 && c <= 0x8f:
		n := int(c & 0x0f)
		if n > (len(r.b)-r.pos)/2 {
			return 0, ErrTooLong
		}
		return n, nil
	case c == Map16:
		return r.length(2, 2)
	case c == Map32:
		return r.length(4, 2)
	}
	return 0, ErrNotScalar
}

// ArrayHeader reads an array header and returns its element count.
func (r *Reader) ArrayHeader() (int, error) {
	// A fixarray, without a call.
	if pos := r.pos; pos < len(r.b) {
		if c := r.b[pos]; c >= 0x90 && c <= 0x9f {
			r.pos = pos + 1
			return int(c & 0x0f), nil
		}
	}
	return r.arrayHeader()
}

func (r *Reader) arrayHeader() (int, error) {
	c, err := r.Byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), nil
	case c == Array16:
		return r.length(2, 1)
	case c == Array32:
		return r.length(4, 1)
	}
	return 0, ErrNotScalar
}

// Int reads any MessagePack integer that fits in an int64. It reads the
// bytes in place rather than through Byte and uintN: a record holds a
// handful of integers, and this is every load's inner loop.
func (r *Reader) Int() (int64, error) {
	pos := r.pos
	if pos >= len(r.b) {
		return 0, ErrTruncated
	}
	c := r.b[pos]
	switch {
	case c <= 0x7f:
		r.pos = pos + 1
		return int64(c), nil
	case c >= 0xe0:
		r.pos = pos + 1
		return int64(int8(c)), nil
	}
	var size int
	switch c {
	case Int8, Uint8:
		size = 1
	case Int16, Uint16:
		size = 2
	case Int32, Uint32:
		size = 4
	case Int64, Uint64:
		size = 8
	default:
		return 0, ErrNotScalar
	}
	if size > len(r.b)-pos-1 {
		r.pos = pos + 1
		return 0, ErrTruncated
	}
	p := r.b[pos+1 : pos+1+size]
	var v int64
	switch c {
	case Int8:
		v = int64(int8(p[0]))
	case Int16:
		v = int64(int16(binary.BigEndian.Uint16(p)))
	case Int32:
		v = int64(int32(binary.BigEndian.Uint32(p)))
	case Int64:
		v = int64(binary.BigEndian.Uint64(p))
	case Uint8:
		v = int64(p[0])
	case Uint16:
		v = int64(binary.BigEndian.Uint16(p))
	case Uint32:
		v = int64(binary.BigEndian.Uint32(p))
	default: // Uint64
		u := binary.BigEndian.Uint64(p)
		if u > math.MaxInt64 {
			r.pos = pos + 1 + size
			return 0, ErrOutOfRange
		}
		v = int64(u)
	}
	r.pos = pos + 1 + size
	return v, nil
}

// Skip moves past one complete value, found depth containers down,
// checking every length against the bytes that remain and nesting against
// MaxDepth.
func (r *Reader) Skip(depth int) error {
	if depth > MaxDepth {
		return ErrTooDeep
	}
	c, err := r.Byte()
	if err != nil {
		return err
	}
	var n, elems int
	switch {
	case c <= 0x7f || c >= 0xe0 || c == Nil || c == False || c == True:
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
		case Bin8, Str8:
			n, err = r.length(1, 1)
		case Bin16, Str16:
			n, err = r.length(2, 1)
		case Bin32, Str32:
			n, err = r.length(4, 1)
		case 0xc7, 0xc8, 0xc9: // ext 8/16/32: length, type byte, data
			if n, err = r.length(1<<(c-0xc7), 1); err != nil {
				return err
			}
			return r.checkExt(r.pos-1-1<<(c-0xc7), n, false, depth)
		case Float32:
			n = 4
		case Float64:
			n = 8
		case Uint8, Uint16, Uint32, Uint64:
			n = 1 << (c - Uint8)
		case Int8, Int16, Int32, Int64:
			n = 1 << (c - Int8)
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16: type byte, data
			return r.checkExt(r.pos-1, 1<<(c-0xd4), true, depth)
		case Array16:
			elems, err = r.length(2, 1)
		case Array32:
			elems, err = r.length(4, 1)
		case Map16:
			elems, err = r.length(2, 2)
			elems *= 2
		case Map32:
			elems, err = r.length(4, 2)
			elems *= 2
		default:
			return ErrBadCode
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
		return ErrTooLong
	}
	isMap := (c >= 0x80 && c <= 0x8f) || c == Map16 || c == Map32
	for i := 0; i < elems; i++ {
		// A container as a map key decodes into nothing Go can hash, and
		// msgpack's reflection panics on it; refuse it here.
		if isMap && i%2 == 0 && r.pos < len(r.b) && isContainer(r.b[r.pos]) {
			return errBadMapKey
		}
		if err := r.Skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func isContainer(c byte) bool {
	return (c >= 0x80 && c <= 0x9f) || (c >= Array16 && c <= Map32)
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
func (r *Reader) checkExt(start, n int, fixed bool, depth int) error {
	typ, err := r.Byte()
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
	inner := Reader{b: payload}
	// Timestamps inside would need rewriting, which would change this
	// extension's length: refuse them too.
	if inner.Skip(depth+1) != nil || inner.pos != n || inner.stamps != nil {
		return errBadExt
	}
	return nil
}

func isMapCode(c byte) bool { return (c >= 0x80 && c <= 0x8f) || c == Map16 || c == Map32 }

var errBadExt = errors.New("kvsession: msgpack extension whose data begins like a map but is not one")

// anyValue decodes one value of data Validate checked: it trusts every
// length.
func (r *Reader) anyValue() (any, error) {
	c := r.b[r.pos]
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= Int8 && c <= Int64):
		return r.Int()
	case c >= Uint8 && c <= Uint64:
		r.pos++
		u, err := r.uintN(1 << (c - Uint8))
		if u <= math.MaxInt64 {
			return int64(u), err
		}
		return u, err
	case c == Nil:
		r.pos++
		return nil, nil
	case c == True || c == False:
		r.pos++
		return c == True, nil
	case c == Float64:
		r.pos++
		u, err := r.uintN(8)
		return math.Float64frombits(u), err
	case c == Float32:
		r.pos++
		u, err := r.uintN(4)
		return math.Float32frombits(uint32(u)), err
	case (c >= 0xa0 && c <= 0xbf) || c == Str8 || c == Str16 || c == Str32:
		s, err := r.strLike(true)
		return string(s), err
	case c == Bin8 || c == Bin16 || c == Bin32:
		b, err := r.strLike(false)
		return append([]byte(nil), b...), err
	case (c >= 0x90 && c <= 0x9f) || c == Array16 || c == Array32:
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
	case (c >= 0x80 && c <= 0x8f) || c == Map16 || c == Map32:
		n, err := r.MapHeader()
		if err != nil {
			return nil, err
		}
		return r.mapValue(n)
	}
	return r.extValue()
}

// mapValue decodes n entries as map[string]any, or as map[any]any once a
// key that is not a string appears.
func (r *Reader) mapValue(n int) (any, error) {
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
func (r *Reader) extValue() (any, error) {
	c, err := r.Byte()
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
		return nil, ErrBadCode
	}
	typ, err := r.Byte()
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
	return nil, ErrBadCode
}

// Skip4 moves past the next four bytes if they are a, b, c and d, and
// reports whether it did: a reader that expects one common encoding of a
// field checks for it at the cost of a comparison.
func (r *Reader) Skip4(a, b, c, d byte) bool {
	if pos := r.pos; pos+4 <= len(r.b) && r.b[pos] == a && r.b[pos+1] == b && r.b[pos+2] == c && r.b[pos+3] == d {
		r.pos = pos + 4
		return true
	}
	return false
}
