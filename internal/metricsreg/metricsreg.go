// Package metricsreg is the one "register or reuse" helper for Prometheus
// collectors. Protocol packages may import it (and nothing else of ours):
// several servers built on one registry, as tests do, share their collectors.
package metricsreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register adds c to reg and returns it, or returns the collector of the
// same type already registered under that name. A nil reg registers
// nothing. Two different collectors under one name are a programming error
// and panic at construction, never later.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("register metric: %v", err))
}
