package metricsreg

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// WithReplica returns g with the label replica=name on every sample, so the
// series of several processes behind one balancer stay apart. (Not
// "instance": Prometheus sets that one itself from the scrape target and
// would rename ours to exported_instance.)
func WithReplica(g prometheus.Gatherer, name string) prometheus.Gatherer {
	lname, lvalue := "replica", name
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				m.Label = append(m.Label, &dto.LabelPair{Name: &lname, Value: &lvalue})
				// Label pairs must stay sorted by name for the exposition.
				slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
			}
		}
		return mfs, err
	})
}
