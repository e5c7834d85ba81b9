package msgp

import "encoding/binary"

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

// Validate checks that b holds exactly one well-formed value.
func Validate(b []byte) error {
	_, err := Validated(b)
	return err
}

// Validated checks b like Validate and returns it ready for msgpack's
// decoder: b itself, or a rewritten copy if it holds timestamps that
// decoder could misread (see checkExt).
func Validated(b []byte) ([]byte, error) {
	r := Reader{b: b}
	if err := r.Skip(0); err != nil {
		return nil, err
	}
	if r.pos != len(b) {
		return nil, ErrTrailing
	}
	if r.stamps != nil {
		b = rewriteStamps(b, r.stamps)
	}
	return b, nil
}
