package kvprom_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/kvprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A backend instrumented with the metrics, served beside a /metrics
// endpoint.
func Example() {
	reg := prometheus.NewRegistry()
	metrics, err := kvprom.New(kvprom.Options{Namespace: "myapp", Registerer: reg})
	if err != nil {
		panic(err)
	}
	cfg := kvsession.Config{}
	metrics.Instrument(&cfg) // keeps any hooks cfg.Events had
	backend, err := kvsession.New(cfg, nil)
	if err != nil {
		panic(err)
	}
	defer backend.Close()
	mw, err := kvhttp.New(backend, kvhttp.Options{})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/", mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := kvhttp.Session(r)
		n, _ := sess.GetInt("visits")
		sess.SetInt("visits", n+1)
	})))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	// One visit, then read the counter back from the registry.
	mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == "myapp_kvsession_sessions_created_total" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	// Output: myapp_kvsession_sessions_created_total 1
}
