package kvsession

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kvsession/kvsession/internal/msgp"
)

// Codec encodes and decodes one session value. The session envelope (ids,
// timestamps, the key→value map) has a fixed format of its own; a Codec only
// sees the values an application stores.
//
// Decode and DecodeAny receive data that came from the store and may be
// corrupt or hostile: they must return an error rather than panic or
// allocate in proportion to a length the data claims but does not hold.
// What they return must not alias data, whose buffer is reused once the
// request ends.
type Codec interface {
	// AppendEncode appends the encoding of v to dst.
	AppendEncode(dst []byte, v any) ([]byte, error)
	// Decode decodes data into the value dst points to.
	Decode(data []byte, dst any) error
	// DecodeAny decodes data into a generic Go value.
	DecodeAny(data []byte) (any, error)
}

// Msgpack is the default Codec: MessagePack via
// github.com/vmihailenco/msgpack/v5, with allocation-free fast paths for
// scalars.
//
// Types survive the round trip as follows. Decode (and Session.Decode) into
// a typed destination restores the exact type, structs included. DecodeAny
// (and Session.Get) returns one Go type per MessagePack kind, whatever Go
// type was stored: int64 for every integer that fits (uint64 above
// math.MaxInt64), float64, float32, string, []byte, bool, time.Time (in the
// local zone), nil, and []any / map[string]any for containers, with the same
// rules inside. Use Session.GetInt and friends, or Session.Decode, to get
// back the type you stored.
type Msgpack struct{}

var _ Codec = Msgpack{}

// writerBuf adapts an append-style buffer to io.Writer for msgpack's encoder.
type writerBuf struct{ b []byte }

func (w *writerBuf) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *writerBuf) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }
func (w *writerBuf) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}

type encoderState struct {
	w   writerBuf
	enc *msgpack.Encoder
}

var encoderPool = sync.Pool{New: func() any {
	st := &encoderState{}
	st.enc = msgpack.NewEncoder(&st.w)
	return st
}}

type decoderState struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decoderPool = sync.Pool{New: func() any {
	st := &decoderState{}
	st.dec = msgpack.NewDecoder(&st.r)
	return st
}}

// AppendEncode implements Codec. It refuses a value nested deeper than
// DecodeAny reads back, so what Set accepts, Get returns.
func (Msgpack) AppendEncode(dst []byte, v any) ([]byte, error) {
	return appendValue(dst, v, 0)
}

// appendValue encodes v, found depth containers down. Scalars and the
// generic containers Get hands out are written here without reflection;
// anything else goes to msgpack's encoder and is checked after.
func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > msgp.MaxDepth {
		return dst, msgp.ErrTooDeep
	}
	if depth > 0 {
		if b, ok := appendNestedInt(dst, v); ok {
			return b, nil
		}
	}
	switch x := v.(type) {
	case nil:
		return append(dst, msgp.Nil), nil
	case bool:
		if x {
			return append(dst, msgp.True), nil
		}
		return append(dst, msgp.False), nil
	case string:
		return msgp.AppendString(dst, x), nil
	case []byte:
		return msgp.AppendBin(dst, x), nil
	case int:
		return msgp.AppendInt(dst, int64(x)), nil
	case int64:
		return msgp.AppendInt(dst, x), nil
	case int32:
		return msgp.AppendInt(dst, int64(x)), nil
	case int16:
		return msgp.AppendInt(dst, int64(x)), nil
	case int8:
		return msgp.AppendInt(dst, int64(x)), nil
	case uint:
		return msgp.AppendUint(dst, uint64(x)), nil
	case uint64:
		return msgp.AppendUint(dst, x), nil
	case uint32:
		return msgp.AppendUint(dst, uint64(x)), nil
	case uint16:
		return msgp.AppendUint(dst, uint64(x)), nil
	case uint8:
		return msgp.AppendUint(dst, uint64(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, msgp.Float64), math.Float64bits(x)), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(dst, msgp.Float32), math.Float32bits(x)), nil
	case []any:
		// Ours rather than msgpack's: its reflection path widens a float32
		// to float64 and back, which quiets a signalling NaN. Nil stays
		// nil, as msgpack writes it.
		if x == nil {
			return append(dst, msgp.Nil), nil
		}
		dst = msgp.AppendArrayHeader(dst, len(x))
		for _, e := range x {
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case map[string]any:
		if x == nil {
			return append(dst, msgp.Nil), nil
		}
		dst = msgp.AppendMapHeader(dst, len(x))
		for k, e := range x {
			dst = msgp.AppendString(dst, k)
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	start := len(dst)
	st := encoderPool.Get().(*encoderState)
	st.w.b = dst
	err := st.enc.Encode(v)
	dst = st.w.b
	st.w.b = nil
	encoderPool.Put(st)
	if err != nil {
		return dst, fmt.Errorf("kvsession: encoding %T: %w", v, err)
	}
	// A struct nested past msgp.MaxDepth encodes fine but would never
	// decode; so would a custom encoder's output that is not exactly one
	// value.
	r := msgp.NewReader(dst[start:])
	err = r.Skip(depth)
	if err == nil && !r.Done() {
		err = msgp.ErrTrailing
	}
	if err != nil {
		return dst, fmt.Errorf("kvsession: encoding %T: %w", v, err)
	}
	return dst, nil
}

// appendNestedInt writes an integer inside a container with the code
// msgpack's encoder gives it, which Decode into []any, or into a struct's
// any field, turns back into a Go type by: fixed width for the sized
// types, the smallest form for int and uint. (Top-level values are
// written compactly; reading one always names its type.)
func appendNestedInt(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case int:
		return appendMsgpackInt(dst, int64(x)), true
	case uint:
		return appendMsgpackUint(dst, uint64(x)), true
	case int64:
		return binary.BigEndian.AppendUint64(append(dst, msgp.Int64), uint64(x)), true
	case int32:
		return binary.BigEndian.AppendUint32(append(dst, msgp.Int32), uint32(x)), true
	case int16:
		return binary.BigEndian.AppendUint16(append(dst, msgp.Int16), uint16(x)), true
	case int8:
		return append(dst, msgp.Int8, byte(x)), true
	case uint64:
		return binary.BigEndian.AppendUint64(append(dst, msgp.Uint64), x), true
	case uint32:
		return binary.BigEndian.AppendUint32(append(dst, msgp.Uint32), x), true
	case uint16:
		return binary.BigEndian.AppendUint16(append(dst, msgp.Uint16), x), true
	case uint8:
		return append(dst, msgp.Uint8, x), true
	}
	return dst, false
}

// appendMsgpackUint is msgpack's EncodeUint: a positive fixint, or the
// narrowest unsigned code.
func appendMsgpackUint(dst []byte, n uint64) []byte {
	if n <= math.MaxInt8 {
		return append(dst, byte(n))
	}
	return msgp.AppendUint(dst, n)
}

// appendMsgpackInt is msgpack's EncodeInt: unsigned codes for n ≥ 0, else
// a negative fixint or the narrowest signed code.
func appendMsgpackInt(dst []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendMsgpackUint(dst, uint64(n))
	case n >= -32:
		return append(dst, byte(n))
	case n >= math.MinInt8:
		return append(dst, msgp.Int8, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, msgp.Int16), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, msgp.Int32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, msgp.Int64), uint64(n))
}

// Decode implements Codec. It checks data's structure before decoding, so a
// header that claims more elements than data holds fails without allocating.
func (Msgpack) Decode(data []byte, dst any) error {
	switch p := dst.(type) {
	case *string:
		r := msgp.NewReader(data)
		s, err := r.Str()
		if err != nil {
			return err
		}
		if !r.Done() {
			return msgp.ErrTrailing
		}
		*p = string(s)
		return nil
	case *int64:
		n, err := msgp.ReadInt(data)
		*p = n
		return err
	case *int:
		n, err := msgp.ReadInt(data)
		if err == nil && (n < math.MinInt || n > math.MaxInt) {
			err = msgp.ErrOutOfRange
		}
		*p = int(n)
		return err
	case *bool:
		if len(data) == 1 && (data[0] == msgp.True || data[0] == msgp.False) {
			*p = data[0] == msgp.True
			return nil
		}
		return msgp.ErrNotScalar
	case *any:
		v, err := Msgpack{}.DecodeAny(data)
		*p = v
		return err
	case *map[string]any:
		// Decoded by our own bounded walker, like Get, rather than by
		// msgpack's DecodeMap, which sizes the map from the header alone.
		v, err := Msgpack{}.DecodeAny(data)
		if err != nil {
			return err
		}
		switch m := v.(type) {
		case map[string]any:
			*p = m
			return nil
		case nil:
			*p = nil
			return nil
		}
		return fmt.Errorf("kvsession: cannot decode %T into map[string]any", v)
	}
	data, err := msgp.Validated(data)
	if err != nil {
		return err
	}
	return decodeReflect(data, dst)
}

// decodeReflect runs msgpack's reflection decoder on validated data. It
// panics on some inputs no validation can rule out without knowing dst (a
// []byte key for a map[any]any, say); that is an error like any other here.
func decodeReflect(data []byte, dst any) (err error) {
	st := decoderPool.Get().(*decoderState)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kvsession: decoding into %T: %v", dst, r)
			// The decoder may be mid-value; let it go rather than reuse it.
			return
		}
		st.r.Reset(nil)
		decoderPool.Put(st)
	}()
	st.r.Reset(data)
	st.dec.ResetReader(&st.r)
	err = st.dec.Decode(dst)
	if err == nil && st.r.Len() != 0 {
		err = msgp.ErrTrailing
	}
	return err
}

// DecodeAny implements Codec; see Msgpack for the types it returns.
func (Msgpack) DecodeAny(data []byte) (any, error) {
	return msgp.ReadAny(data)
}
