package kvprom

import (
	"context"
	"strings"
	"testing"

	"github.com/kvsession/kvsession"
	"github.com/prometheus/client_golang/prometheus"
)

// cookieSink keeps the session cookie a response sets.
type cookieSink struct{ cookie string }

func (c *cookieSink) SetCookie(_ string, line []byte) {
	c.cookie, _, _ = strings.Cut(string(line), ";")
}

func (*cookieSink) AddHeader(string, string) {}
func (*cookieSink) SetHeader(string, []byte) {}

// discard drops the response's headers: the benchmark measures the
// session's work alone.
type discard struct{}

func (discard) SetCookie(string, []byte) {}
func (discard) AddHeader(string, string) {}
func (discard) SetHeader(string, []byte) {}

// BenchmarkRequest is one request that reads a counter and saves it, on
// the memory store, without metrics and with them (every hook, store call
// timing included): what the metrics cost a request.
func BenchmarkRequest(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := map[bool]string{false: "without metrics", true: "with metrics"}[withMetrics]
		b.Run(name, func(b *testing.B) {
			cfg := kvsession.Config{}
			if withMetrics {
				m, err := New(Options{Registerer: prometheus.NewRegistry()})
				if err != nil {
					b.Fatal(err)
				}
				m.Instrument(&cfg)
			}
			be, err := kvsession.New(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			ctx := context.Background()
			first := &cookieSink{}
			s := be.LoadFromRequest(ctx, nil)
			s.SetInt("n", 1000)
			if err := be.StoreInResponse(s, first); err != nil {
				b.Fatal(err)
			}
			be.Release(s)
			header := []byte(first.cookie)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s := be.LoadFromRequest(ctx, header)
				n, _ := s.GetInt("n")
				s.SetInt("n", n+1)
				if err := be.StoreInResponse(s, discard{}); err != nil {
					b.Fatal(err)
				}
				be.Release(s)
			}
		})
	}
}
