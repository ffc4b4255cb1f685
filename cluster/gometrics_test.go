package cluster

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestGoMetricsSinkMemberlistStyle emits metrics the way memberlist v0.7
// does (through a hashicorp/go-metrics instance, with its labels) and
// reads them back from a Prometheus scrape.
func TestGoMetricsSinkMemberlistStyle(t *testing.T) {
	reg := prometheus.NewRegistry()
	sink := NewGoMetricsSink()
	reg.MustRegister(sink)
	gm, err := gometrics.New(goMetricsConfig(), sink)
	if err != nil {
		t.Fatal(err)
	}
	labels := []gometrics.Label{{Name: "cluster", Value: "shoal"}}
	gm.IncrCounterWithLabels([]string{"memberlist", "msg", "alive"}, 1, labels)
	gm.IncrCounterWithLabels([]string{"memberlist", "msg", "alive"}, 2, labels)
	gm.IncrCounterWithLabels([]string{"memberlist", "udp", "sent"}, 512, nil)
	gm.SetGaugeWithLabels([]string{"memberlist", "health", "score"}, 2, nil)
	gm.SetGaugeWithLabels([]string{"memberlist", "health", "score"}, 0, nil) // last value wins
	gm.SetGaugeWithLabels([]string{"memberlist", "node", "instances"}, 3, []gometrics.Label{{Name: "node_state", Value: "alive"}})
	gm.SetGaugeWithLabels([]string{"memberlist", "node", "instances"}, 1, []gometrics.Label{{Name: "node_state", Value: "dead"}})
	gm.MeasureSinceWithLabels([]string{"memberlist", "probeNode"}, time.Now().Add(-20*time.Millisecond), nil)
	gm.MeasureSinceWithLabels([]string{"memberlist", "probeNode"}, time.Now().Add(-40*time.Millisecond), nil)
	// A name already taken by another type is dropped, not a broken scrape.
	gm.AddSample([]string{"memberlist", "health", "score"}, 1)

	fams := scrapeText(t, reg)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		typ    dto.MetricType
		want   float64
	}{
		{"memberlist_msg_alive_total", map[string]string{"cluster": "shoal"}, dto.MetricType_COUNTER, 3},
		{"memberlist_udp_sent_total", nil, dto.MetricType_COUNTER, 512},
		{"memberlist_health_score", nil, dto.MetricType_GAUGE, 0},
		{"memberlist_node_instances", map[string]string{"node_state": "alive"}, dto.MetricType_GAUGE, 3},
		{"memberlist_node_instances", map[string]string{"node_state": "dead"}, dto.MetricType_GAUGE, 1},
		{"memberlist_probe_node", nil, dto.MetricType_SUMMARY, 2},
	} {
		fam, ok := fams[tc.name]
		if !ok {
			t.Errorf("%s missing; have %v", tc.name, keys(fams))
			continue
		}
		if fam.GetType() != tc.typ {
			t.Errorf("%s is %v, want %v", tc.name, fam.GetType(), tc.typ)
		}
		got, found := sample(fam, tc.labels)
		if !found || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, found, tc.want)
		}
	}
	if s := fams["memberlist_probe_node"].Metric[0].Summary; s.GetSampleSum() < 60 {
		t.Errorf("probeNode sum %v ms, want >= 60", s.GetSampleSum())
	}
}

// TestInstallGoMetrics checks the global path memberlist uses: the
// package-level go-metrics functions reach the sink.
func TestInstallGoMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := InstallGoMetrics(reg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gometrics.NewGlobal(gometrics.DefaultConfig(""), &gometrics.BlackholeSink{}) })
	gometrics.IncrCounterWithLabels([]string{"memberlist", "tcp", "accept"}, 1, nil)
	fams := scrapeText(t, reg)
	if v, ok := sample(fams["memberlist_tcp_accept_total"], nil); !ok || v != 1 {
		t.Errorf("memberlist_tcp_accept_total = %v (found %v); have %v", v, ok, keys(fams))
	}
}

// TestGoMetricsRealMemberlist joins two real memberlist nodes on loopback
// and sees their own metrics in the registry: proof that the sink sits on
// the go-metrics module memberlist v0.7 reports through.
func TestGoMetricsRealMemberlist(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := InstallGoMetrics(reg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gometrics.NewGlobal(gometrics.DefaultConfig(""), &gometrics.BlackholeSink{}) })

	var nodes []*memberlist.Memberlist
	for _, name := range []string{"m1", "m2"} {
		conf := memberlist.DefaultLocalConfig()
		conf.Name = name
		conf.BindAddr = "127.0.0.1"
		conf.BindPort = 0
		conf.AdvertiseAddr = "127.0.0.1"
		conf.LogOutput = io.Discard
		conf.ProbeInterval = 50 * time.Millisecond
		conf.GossipInterval = 20 * time.Millisecond
		ml, err := memberlist.Create(conf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ml.Shutdown() })
		nodes = append(nodes, ml)
	}
	if _, err := nodes[1].Join([]string{nodes[0].LocalNode().Address()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrapeText(t, reg)
		_, tcp := fams["memberlist_tcp_connect_total"]
		_, probe := fams["memberlist_probe_node"]
		if tcp && probe {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no memberlist metrics after joining; have %v", keys(fams))
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

func TestPromName(t *testing.T) {
	for _, tc := range []struct {
		key    []string
		suffix string
		want   string
	}{
		{[]string{"memberlist", "probeNode"}, "", "memberlist_probe_node"},
		{[]string{"memberlist", "pushPullNode"}, "", "memberlist_push_pull_node"},
		{[]string{"memberlist", "tcp", "sent"}, "_total", "memberlist_tcp_sent_total"},
		{[]string{"a.b", "c-d", "e f"}, "", "a_b_c_d_e_f"},
		{[]string{"9lives"}, "", "_9lives"},
		{[]string{"done_total"}, "_total", "done_total"},
	} {
		if got := promName(tc.key, tc.suffix); got != tc.want {
			t.Errorf("promName(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestGoMetricsSinkBounded(t *testing.T) {
	sink := NewGoMetricsSink()
	for i := range maxGoSeries + 100 {
		sink.SetGaugeWithLabels([]string{"x"}, 1, []gometrics.Label{{Name: "n", Value: string(rune('a'+i%26)) + string(rune(i))}})
	}
	if n := len(sink.series); n != maxGoSeries {
		t.Errorf("%d series kept, want the cap %d", n, maxGoSeries)
	}
}

func scrapeText(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return fams
}

func sample(fam *dto.MetricFamily, want map[string]string) (float64, bool) {
	if fam == nil {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount()), true
		}
	}
	return 0, false
}

func keys(m map[string]*dto.MetricFamily) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
