package msgp

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// TestAppendIntReadsBack: every width AppendInt and AppendUint choose reads
// back through Reader.Int, in the fewest bytes for signed values and with
// an unsigned code for unsigned ones.
func TestAppendIntReadsBack(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		size int
	}{
		{0, 1}, {127, 1}, {-32, 1}, {128, 3}, {-33, 2}, {math.MinInt8, 2}, {math.MinInt8 - 1, 3},
		{math.MaxInt16, 3}, {math.MaxInt16 + 1, 5}, {math.MinInt32, 5}, {math.MaxInt32 + 1, 9}, {math.MinInt64, 9},
	} {
		b := AppendInt(nil, tc.n)
		if len(b) != tc.size {
			t.Errorf("AppendInt(%d) is %d bytes, want %d", tc.n, len(b), tc.size)
		}
		if got, err := ReadInt(b); err != nil || got != tc.n {
			t.Errorf("AppendInt(%d) reads back %d, %v", tc.n, got, err)
		}
	}
	for _, n := range []uint64{0, math.MaxUint8, math.MaxUint8 + 1, math.MaxUint16 + 1, math.MaxUint32 + 1, math.MaxInt64} {
		b := AppendUint(nil, n)
		if b[0] < Uint8 || b[0] > Uint64 {
			t.Errorf("AppendUint(%d) uses code %#x", n, b[0])
		}
		if got, err := ReadInt(b); err != nil || uint64(got) != n {
			t.Errorf("AppendUint(%d) reads back %d, %v", n, got, err)
		}
	}
	if _, err := ReadInt(AppendUint(nil, math.MaxInt64+1)); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("an unsigned value past MaxInt64 reads with %v, want ErrOutOfRange", err)
	}
}

// TestAppendHeadersReadBack crosses every header width of str, bin and map.
func TestAppendHeadersReadBack(t *testing.T) {
	for _, n := range []int{0, 31, 32, math.MaxUint8, math.MaxUint8 + 1, math.MaxUint16, math.MaxUint16 + 1} {
		v := bytes.Repeat([]byte{'x'}, n)
		r := NewReader(AppendString(nil, string(v)))
		if got, err := r.Str(); err != nil || !bytes.Equal(got, v) || !r.Done() {
			t.Errorf("str of %d bytes reads back %d bytes, %v", n, len(got), err)
		}
		r = NewReader(AppendBin(nil, v))
		if got, err := r.Bin(); err != nil || !bytes.Equal(got, v) || !r.Done() {
			t.Errorf("bin of %d bytes reads back %d bytes, %v", n, len(got), err)
		}
		// Entries to count: a header may claim no more than the data holds.
		r = NewReader(append(AppendMapHeader(nil, n), make([]byte, 2*n)...))
		if got, err := r.MapHeader(); err != nil || got != n {
			t.Errorf("map of %d entries reads back %d, %v", n, got, err)
		}
	}
}
