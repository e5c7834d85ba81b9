package msgp

import (
	"encoding/binary"
	"math"
)

// AppendInt writes n with a signed encoding only, so that a reader decoding
// "loosely" always gets int64 back for a Go signed integer.
func AppendInt(b []byte, n int64) []byte {
	switch {
	case n >= -32 && n <= 127:
		return append(b, byte(n))
	case n >= math.MinInt8 && n <= math.MaxInt8:
		return append(b, Int8, byte(n))
	case n >= math.MinInt16 && n <= math.MaxInt16:
		return binary.BigEndian.AppendUint16(append(b, Int16), uint16(n))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(b, Int32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, Int64), uint64(n))
}

// AppendUint always writes an unsigned code, so unsigned values come back as
// uint64 rather than as the int64 a positive fixint would give.
func AppendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, Uint8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, Uint16), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, Uint32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, Uint64), n)
}

func AppendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, Str8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, Str16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, Str32), uint32(n))
}

func AppendString(b []byte, s string) []byte {
	return append(AppendStrHeader(b, len(s)), s...)
}

// AppendBin writes v as a bin value.
func AppendBin(b, v []byte) []byte { return append(AppendBinHeader(b, len(v)), v...) }

func AppendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, Bin8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, Bin16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, Bin32), uint32(n))
}

func AppendArrayHeader(b []byte, n int) []byte { return appendContainerHeader(b, n, 0x90, Array16) }

func AppendMapHeader(b []byte, n int) []byte { return appendContainerHeader(b, n, 0x80, Map16) }

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
