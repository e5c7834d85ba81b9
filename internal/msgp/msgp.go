// Package msgp holds the few MessagePack primitives kvsession's hot path
// needs: writing and reading scalars and headers without a Decoder, and a
// bounded walk that checks a value's structure before any decoder
// allocates for it.
//
// Errors keep the "kvsession:" prefix: they reach applications through
// kvsession's API, which is where they have to make sense.
package msgp

import "errors"

var (
	ErrTruncated  = errors.New("kvsession: truncated msgpack value")
	ErrBadCode    = errors.New("kvsession: invalid msgpack code")
	ErrTooDeep    = errors.New("kvsession: msgpack value nested too deeply")
	ErrTooLong    = errors.New("kvsession: msgpack length exceeds the data")
	ErrNotScalar  = errors.New("kvsession: msgpack value has another type")
	ErrTrailing   = errors.New("kvsession: trailing bytes after msgpack value")
	ErrOutOfRange = errors.New("kvsession: integer out of range")
)

// MaxDepth bounds nesting so a hostile value of a million one-byte array
// headers cannot exhaust the stack of a recursive decoder.
const MaxDepth = 64

// The MessagePack codes with a name of their own; the fix ranges (positive
// and negative fixint, fixmap, fixarray, fixstr) are written as numbers.
const (
	Nil     = 0xc0
	False   = 0xc2
	True    = 0xc3
	Bin8    = 0xc4
	Bin16   = 0xc5
	Bin32   = 0xc6
	Float32 = 0xca
	Float64 = 0xcb
	Uint8   = 0xcc
	Uint16  = 0xcd
	Uint32  = 0xce
	Uint64  = 0xcf
	Int8    = 0xd0
	Int16   = 0xd1
	Int32   = 0xd2
	Int64   = 0xd3
	Str8    = 0xd9
	Str16   = 0xda
	Str32   = 0xdb
	Array16 = 0xdc
	Array32 = 0xdd
	Map16   = 0xde
	Map32   = 0xdf
)
