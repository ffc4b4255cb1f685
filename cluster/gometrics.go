package cluster

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// GoMetricsSink receives what memberlist reports through hashicorp/go-metrics
// (the module memberlist v0.7 imports; a sink on armon/go-metrics would hear
// nothing) and exposes it as a prometheus.Collector. Gauges stay gauges,
// counters become *_total counters, samples (timings in milliseconds, sizes
// in bytes) become summaries with a sum and a count. Names are snake_case
// with dots turned into underscores: memberlist.probeNode becomes
// memberlist_probe_node.
type GoMetricsSink struct {
	// mu guards series and kinds.
	mu     sync.Mutex
	series map[string]*goSeries
	kinds  map[string]goKind // metric name -> the kind that claimed it
}

type goKind uint8

const (
	goGauge goKind = iota + 1
	goCounter
	goSummary
)

type goSeries struct {
	name        string
	kind        goKind
	labelNames  []string
	labelValues []string
	value       float64 // gauge value or counter total
	sum         float64 // summary
	count       uint64  // summary
}

// maxGoSeries bounds memory if a caller ever labels a metric with
// something unbounded; memberlist itself emits a few dozen series.
const maxGoSeries = 2000

var (
	_ gometrics.MetricSink               = (*GoMetricsSink)(nil)
	_ gometrics.PrecisionGaugeMetricSink = (*GoMetricsSink)(nil)
	_ prometheus.Collector               = (*GoMetricsSink)(nil)
)

// NewGoMetricsSink returns an empty sink; register it on a Prometheus
// registry and install it with InstallGoMetrics (or gometrics.NewGlobal).
func NewGoMetricsSink() *GoMetricsSink {
	return &GoMetricsSink{series: map[string]*goSeries{}, kinds: map[string]goKind{}}
}

// InstallGoMetrics registers a new sink on reg and makes it go-metrics'
// global sink, which is where memberlist reports. The global is process
// wide: call this once, before memberlist is created.
func InstallGoMetrics(reg prometheus.Registerer) (*GoMetricsSink, error) {
	sink := NewGoMetricsSink()
	if err := reg.Register(sink); err != nil {
		return nil, fmt.Errorf("cluster: registering memberlist metrics: %w", err)
	}
	if _, err := gometrics.NewGlobal(goMetricsConfig(), sink); err != nil {
		return nil, fmt.Errorf("cluster: installing memberlist metrics: %w", err)
	}
	return sink, nil
}

// goMetricsConfig keeps metric names as memberlist wrote them: no host
// name or service prefix, and no runtime stats (the Prometheus Go
// collector already has those).
func goMetricsConfig() *gometrics.Config {
	conf := gometrics.DefaultConfig("")
	conf.EnableHostname = false
	conf.EnableHostnameLabel = false
	conf.EnableServiceLabel = false
	conf.EnableRuntimeMetrics = false
	conf.EnableTypePrefix = false
	return conf
}

func (s *GoMetricsSink) SetGauge(key []string, val float32) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), nil)
}

func (s *GoMetricsSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), labels)
}

func (s *GoMetricsSink) SetPrecisionGauge(key []string, val float64) {
	s.SetPrecisionGaugeWithLabels(key, val, nil)
}

func (s *GoMetricsSink) SetPrecisionGaugeWithLabels(key []string, val float64, labels []gometrics.Label) {
	s.update(goGauge, promName(key, ""), labels, func(se *goSeries) { se.value = val })
}

// EmitKey is a one-off key/value pair with no Prometheus counterpart;
// memberlist does not use it.
func (s *GoMetricsSink) EmitKey(key []string, val float32) {}

func (s *GoMetricsSink) IncrCounter(key []string, val float32) {
	s.IncrCounterWithLabels(key, val, nil)
}

func (s *GoMetricsSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	if val < 0 {
		return // a Prometheus counter never goes down
	}
	s.update(goCounter, promName(key, "_total"), labels, func(se *goSeries) { se.value += float64(val) })
}

func (s *GoMetricsSink) AddSample(key []string, val float32) {
	s.AddSampleWithLabels(key, val, nil)
}

func (s *GoMetricsSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.update(goSummary, promName(key, ""), labels, func(se *goSeries) {
		se.sum += float64(val)
		se.count++
	})
}

func (s *GoMetricsSink) update(kind goKind, name string, labels []gometrics.Label, apply func(*goSeries)) {
	names, values := promLabels(labels)
	id := name + "\xff" + strings.Join(names, "\xfe") + "\xff" + strings.Join(values, "\xfe")
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.series[id]
	if !ok {
		// One name, one type: Prometheus rejects a family with two.
		if k, claimed := s.kinds[name]; (claimed && k != kind) || len(s.series) >= maxGoSeries {
			return
		}
		s.kinds[name] = kind
		se = &goSeries{name: name, kind: kind, labelNames: names, labelValues: values}
		s.series[id] = se
	}
	apply(se)
}

// Describe sends nothing: the series appear as memberlist reports them,
// which makes this an unchecked collector.
func (s *GoMetricsSink) Describe(chan<- *prometheus.Desc) {}

func (s *GoMetricsSink) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	snapshot := make([]goSeries, 0, len(s.series))
	for _, se := range s.series {
		snapshot = append(snapshot, *se)
	}
	s.mu.Unlock()
	// Sending happens after unlocking, so a slow scrape never blocks gossip.
	for _, se := range snapshot {
		desc := prometheus.NewDesc(se.name, "memberlist metric "+se.name+" (via go-metrics).", se.labelNames, nil)
		var m prometheus.Metric
		var err error
		switch se.kind {
		case goGauge:
			m, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, se.value, se.labelValues...)
		case goCounter:
			m, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, se.value, se.labelValues...)
		case goSummary:
			m, err = prometheus.NewConstSummary(desc, se.count, se.sum, nil, se.labelValues...)
		}
		if err != nil {
			m = prometheus.NewInvalidMetric(desc, err)
		}
		ch <- m
	}
}

// promName joins a go-metrics key into a Prometheus name: parts joined by
// "_", camelCase split into snake_case, anything else invalid made "_".
func promName(key []string, suffix string) string {
	var b strings.Builder
	for i, part := range key {
		if i > 0 {
			b.WriteByte('_')
		}
		writeSnake(&b, part)
	}
	name := b.String()
	if name == "" || unicode.IsDigit(rune(name[0])) {
		name = "_" + name
	}
	if suffix != "" && !strings.HasSuffix(name, suffix) {
		name += suffix
	}
	return name
}

func writeSnake(b *strings.Builder, s string) {
	var prev rune
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			if (prev >= 'a' && prev <= 'z') || (prev >= '0' && prev <= '9') {
				b.WriteByte('_')
			}
			b.WriteRune(r + ('a' - 'A'))
		case (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' || r == ':':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		prev = r
	}
}

// promLabels sorts labels by name (a series' identity must not depend on
// the order they were given in) and makes their names valid; a repeated
// name keeps its last value.
func promLabels(labels []gometrics.Label) (names, values []string) {
	if len(labels) == 0 {
		return nil, nil
	}
	byName := make(map[string]string, len(labels))
	for _, l := range labels {
		var b strings.Builder
		writeSnake(&b, l.Name)
		n := strings.ReplaceAll(b.String(), ":", "_")
		if n == "" || unicode.IsDigit(rune(n[0])) || strings.HasPrefix(n, "__") {
			n = "l_" + n
		}
		byName[n] = l.Value
	}
	names = make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	values = make([]string, len(names))
	for i, n := range names {
		values[i] = byName[n]
	}
	return names, values
}
