package msgp

import (
	"errors"
	"testing"
)

// TestReaderRefusesWhatTheDataCannotHold: a length the remaining bytes
// cannot hold is an error before anything is sliced or counted out, and a
// value of another type is told apart from a broken one.
func TestReaderRefusesWhatTheDataCannotHold(t *testing.T) {
	for name, tc := range map[string]struct {
		data []byte
		read func(*Reader) error
		want error
	}{
		"str32 of 4G":        {[]byte{Str32, 0xff, 0xff, 0xff, 0xff, 'x'}, str, ErrTooLong},
		"bin32 of 4G":        {[]byte{Bin32, 0xff, 0xff, 0xff, 0xff, 'x'}, bin, ErrTooLong},
		"map32 of 4G":        {[]byte{Map32, 0xff, 0xff, 0xff, 0xff, 1, 1}, mapHeader, ErrTooLong},
		"fixmap of 15":       {[]byte{0x8f, 1, 1}, mapHeader, ErrTooLong},
		"str cut short":      {[]byte{0xa3, 'a'}, str, ErrTruncated},
		"int64 cut short":    {[]byte{Int64, 1, 2}, integer, ErrTruncated},
		"empty":              {nil, integer, ErrTruncated},
		"a str read as bin":  {[]byte{0xa1, 'a'}, bin, ErrNotScalar},
		"a bin read as str":  {[]byte{Bin8, 1, 'a'}, str, ErrNotScalar},
		"a str read as int":  {[]byte{0xa1, 'a'}, integer, ErrNotScalar},
		"an int read as map": {[]byte{1}, mapHeader, ErrNotScalar},
	} {
		r := NewReader(tc.data)
		if err := tc.read(&r); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func str(r *Reader) error       { _, err := r.Str(); return err }
func bin(r *Reader) error       { _, err := r.Bin(); return err }
func mapHeader(r *Reader) error { _, err := r.MapHeader(); return err }
func integer(r *Reader) error   { _, err := r.Int(); return err }

func TestReadIntRefusesTrailingBytes(t *testing.T) {
	if _, err := ReadInt([]byte{1, 2}); !errors.Is(err, ErrTrailing) {
		t.Errorf("ReadInt with a byte after: %v, want ErrTrailing", err)
	}
}
