package sessioncookie

import (
	"strconv"
	"strings"
	"testing"
)

func TestSplitBrokenCookies(t *testing.T) {
	sp := NewSplitter("s", 4)
	tests := []struct {
		name   string
		header string
		want   error
	}{
		{"missing segment", "s-0=0.3.aa; s-2=2.3.cc", errCookieSegmentSet},
		{"missing first segment", "s-1=1.2.bb", errCookieSegmentSet},
		{"extra segment", "s-0=0.2.aa; s-1=1.2.bb; s-2=2.2.cc", errCookieSegmentSet},
		{"duplicated segment", "s-0=0.2.aa; s-1=1.2.bb; s-1=1.2.bb", errCookieDuplicate},
		{"duplicated bare cookie", "s=aa; s=bb", errCookieDuplicate},
		{"segments swapped", "s-0=1.2.bb; s-1=0.2.aa", errCookieSegmentHeader},
		{"counts disagree", "s-0=0.2.aa; s-1=1.3.bb", errCookieSegmentHeader},
		{"count beyond bound", "s-0=0.9.aa; s-1=1.9.bb", errCookieSegmentHeader},
		{"index beyond bound", "s-0=0.2.aa; s-1=1.2.bb; s-4=4.5.ee", errCookieSegmentBound},
		{"huge index", "s-0=0.2.aa; s-99999999999999999999=x", errCookieSegmentName},
		{"leading zero", "s-0=0.2.aa; s-01=1.2.bb", errCookieSegmentName},
		{"single segment", "s-0=0.1.aa", errCookieSegmentHeader},
		{"no header", "s-0=aa; s-1=bb", errCookieSegmentHeader},
		{"header without payload separator", "s-0=0.2; s-1=1.2", errCookieSegmentHeader},
		{"zero-padded count", "s-0=0.02.aa; s-1=1.02.bb", errCookieSegmentHeader},
		{"bare and segments", "s=zz; s-0=0.2.aa; s-1=1.2.bb", errCookieBareAndSplit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := sp.Read(nil, []byte(tt.header))
			if err != tt.want {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if len(got) != 0 {
				t.Fatalf("broken cookie still yields %q", got)
			}
		})
	}
}

func TestSplitReadsOnlyItsOwnCookies(t *testing.T) {
	sp := NewSplitter("s", 4)
	tests := []struct {
		header string
		want   string
	}{
		{"", ""},
		{"other=1; s-id=7; ss=2; s-x=3", ""},
		{"a=1;s=val;b=2", "val"},
		{"  s = val  ; junk; =x; s-1x=9", "val"},
		{"s-1=1.2.def; other=1; s-0=0.2.abc", "abcdef"},
		{"s-0=0.2.a.b; s-1=1.2..c", "a.b.c"}, // dots inside the payload stay
	}
	for _, tt := range tests {
		got, _, err := sp.Read(nil, []byte(tt.header))
		if err != nil || string(got) != tt.want {
			t.Errorf("Read(%q) = %q, %v; want %q", tt.header, got, err, tt.want)
		}
	}
}

func BenchmarkSplitRead(b *testing.B) {
	sp := NewSplitter("session", 4)
	for _, segs := range []int{1, 3} {
		b.Run(strconv.Itoa(segs), func(b *testing.B) {
			var h []string
			if segs == 1 {
				h = append(h, "session="+strings.Repeat("x", 43))
			} else {
				for i := 0; i < segs; i++ {
					h = append(h, "session-"+strconv.Itoa(i)+"="+strconv.Itoa(i)+"."+strconv.Itoa(segs)+"."+strings.Repeat("x", 4000))
				}
			}
			hdr := []byte("_ga=GA1.2.3; theme=dark; " + strings.Join(h, "; "))
			var dst []byte
			b.ReportAllocs()
			for b.Loop() {
				dst, _, _ = sp.Read(dst, hdr)
			}
		})
	}
}
