package metricsreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	b := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	if a != b {
		t.Error("a second registration under one name did not reuse the first collector")
	}
	if c := Register[prometheus.Counter](nil, a); c != a {
		t.Error("a nil registry must hand the collector back")
	}
	defer func() {
		if recover() == nil {
			t.Error("a different collector under a taken name did not panic")
		}
	}()
	Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "x"}))
}
