package books

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"shoal/handlers/admin"
)

// siteChain stands in for the lead's chain: an outer layer that puts an
// Info with the site in the context, Metrics.Middleware, then handlers
// that say what kind they are.
func siteChain(m *Metrics, site string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/static", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindStatic)
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/sendfile", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindStatic)
		io.Copy(w, strings.NewReader(strings.Repeat("x", 1000)))
	})
	mux.HandleFunc("/cgi", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindCGI)
		http.Error(w, "boom", http.StatusBadGateway)
	})
	mux.HandleFunc("/proxy", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindProxy)
		InfoFrom(r).Peer = "node-b"
		io.WriteString(w, "from b")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindRedirect)
		InfoFrom(r).Peer = "node-c"
		http.Redirect(w, r, "http://node-c/", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindProxy)
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindCGI)
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
	})
	inner := m.Middleware(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, WithInfo(r, &Info{Site: site}))
	})
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// membersView is a cluster of fixed members, for shoal_cluster_members.
type membersView []admin.Member

func (v membersView) Self() string            { return v[0].Name }
func (v membersView) Members() []admin.Member { return v }

func TestMetricsExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.WatchCluster(membersView{
		{Name: "node-a", State: admin.StateAlive}, {Name: "node-b", State: admin.StateAlive}, {Name: "node-c", State: admin.StateDead},
	})
	m.ObserveCGI(func() int { return 3 }, func() int { return 2 })
	m.CGIStarted()
	m.CGITimedOut()
	m.CGIRejected()
	m.Retried("node-b")
	m.PeerFailed("node-b")

	site := httptest.NewServer(siteChain(m, "example.com"))
	defer site.Close()
	adminSrv := httptest.NewServer((&admin.Server{Gatherer: reg}).Handler())
	defer adminSrv.Close()

	for _, p := range []string{"/static", "/sendfile", "/cgi", "/proxy", "/redirect", "/flush", "/missing"} {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(site.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// An aborted response: the client sees an error, the metrics a 5xx.
	// POST, because the client would retry an idempotent request.
	if resp, err := http.Post(site.URL+"/abort", "text/plain", nil); err == nil {
		resp.Body.Close()
	}

	fams := scrape(t, adminSrv.URL+"/metrics")
	for _, name := range []string{
		"shoal_http_requests_total", "shoal_http_request_duration_seconds", "shoal_http_response_bytes_total",
		"shoal_http_requests_in_flight", "shoal_cgi_running", "shoal_cgi_queued", "shoal_cgi_runs_total",
		"shoal_cgi_timeouts_total", "shoal_cgi_rejected_total", "shoal_cluster_proxied_total",
		"shoal_cluster_redirected_total", "shoal_cluster_retries_total", "shoal_cluster_peer_failures_total",
		"shoal_cluster_members", "go_goroutines", "process_cpu_seconds_total",
	} {
		if _, ok := fams[name]; !ok {
			t.Errorf("family %s missing", name)
		}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "static", "status": "200"}, 2},
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "cgi", "status": "502"}, 1},
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "cgi", "status": "200"}, 1},
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "proxy", "status": "200"}, 1},
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "proxy", "status": "500"}, 1},
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "redirect", "status": "307"}, 1},
		{"shoal_http_requests_total", map[string]string{"site": "example.com", "handler": "other", "status": "404"}, 1},
		{"shoal_http_request_duration_seconds", map[string]string{"site": "example.com", "handler": "static"}, 2},
		{"shoal_http_response_bytes_total", map[string]string{"site": "example.com", "handler": "static"}, 1005},
		{"shoal_http_requests_in_flight", map[string]string{"site": "example.com"}, 0},
		{"shoal_cluster_proxied_total", map[string]string{"peer": "node-b"}, 1},
		{"shoal_cluster_redirected_total", map[string]string{"peer": "node-c"}, 1},
		{"shoal_cluster_retries_total", map[string]string{"peer": "node-b"}, 1},
		{"shoal_cluster_members", map[string]string{"state": "alive"}, 2},
		{"shoal_cluster_members", map[string]string{"state": "dead"}, 1},
		{"shoal_cluster_members", map[string]string{"state": "left"}, 0},
		{"shoal_cgi_running", nil, 3},
		{"shoal_cgi_queued", nil, 2},
		{"shoal_cgi_timeouts_total", nil, 1},
	} {
		got, ok := value(fams, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}

	// The counter moves with the next request.
	before, _ := value(fams, "shoal_http_requests_total", map[string]string{"handler": "static", "status": "200"})
	resp, err := http.Get(site.URL + "/static")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after, _ := value(scrape(t, adminSrv.URL+"/metrics"), "shoal_http_requests_total", map[string]string{"handler": "static", "status": "200"})
	if after != before+1 {
		t.Errorf("request counter went from %v to %v, want +1", before, after)
	}
}

func TestMetricsInFlight(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	entered, release := make(chan struct{}), make(chan struct{})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindTemplate)
		entered <- struct{}{}
		<-release
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	if n := m.InFlight(); n != 1 {
		t.Errorf("InFlight = %d during a request", n)
	}
	byName := families(t, reg)
	if v, _ := value(byName, "shoal_http_requests_in_flight", map[string]string{"site": "default"}); v != 1 {
		t.Errorf("in-flight gauge = %v during a request", v)
	}
	close(release)
	<-done
	if n := m.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after", n)
	}
}

func TestMetricsTrack(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	done := m.Track("example.org")
	if m.InFlight() != 1 {
		t.Fatalf("InFlight = %d after Track", m.InFlight())
	}
	done(&Info{Handler: KindTemplate}, 0, 10)
	done2 := m.Track("example.org")
	done2(&Info{Handler: KindTemplate}, 503, 0)
	if m.InFlight() != 0 {
		t.Errorf("InFlight = %d after done", m.InFlight())
	}
	byName := families(t, reg)
	for class, want := range map[string]float64{"200": 1, "503": 1} {
		v, _ := value(byName, "shoal_http_requests_total", map[string]string{"site": "example.org", "handler": "template", "status": class})
		if v != want {
			t.Errorf("%s = %v, want %v", class, v, want)
		}
	}
}

// TestMetricsSeriesCache: answers alternating between sites, kinds and
// statuses each land in their own series (the per-site cache of the last
// series must not send one to another's), and every gauge ends at 0.
func TestMetricsSeriesCache(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	type answer struct {
		site, kind string
		status     int
	}
	seq := []answer{
		{"a", KindStatic, 200}, {"a", KindStatic, 200}, {"a", KindStatic, 404},
		{"b", KindStatic, 200}, {"a", KindUpstream, 200}, {"a", KindStatic, 200},
		{"b", KindCGI, 0}, {"b", KindStatic, 200}, {"a", KindUpstream, 502},
	}
	want := map[answer]float64{}
	for _, a := range seq {
		sp := m.Start(a.site)
		sp.End(&Info{Handler: a.kind}, a.status, 1)
		if a.status == 0 {
			a.status = 200
		}
		want[a]++
	}
	byName := families(t, reg)
	for a, n := range want {
		labels := map[string]string{"site": a.site, "handler": a.kind, "status": strconv.Itoa(a.status)}
		if v, _ := value(byName, "shoal_http_requests_total", labels); v != n {
			t.Errorf("%v: %v requests, want %v", a, v, n)
		}
	}
	for _, site := range []string{"a", "b"} {
		if v, _ := value(byName, "shoal_http_requests_in_flight", map[string]string{"site": site}); v != 0 {
			t.Errorf("site %s: %v in flight after every answer", site, v)
		}
	}
}

// families gathers reg's metric families by name.
func families(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	return byName
}

func TestRateMeter(t *testing.T) {
	var rm rateMeter
	t0 := time.Unix(1_700_000_000, 0)
	if r, e := rm.rates(t0, 0, 0); r != 0 || e != 0 {
		t.Errorf("first call = %v, %v", r, e)
	}
	// 100 requests/s, 10 of them 5xx, sampled every second.
	var r, e float64
	for i := 1; i <= 30; i++ {
		r, e = rm.rates(t0.Add(time.Duration(i)*time.Second), uint64(100*i), uint64(10*i))
	}
	if r != 100 || e != 10 {
		t.Errorf("steady rates = %v, %v; want 100, 10", r, e)
	}
	// The window forgets: after a quiet spell of 15 s the rate is 0.
	for i := 31; i <= 45; i++ {
		r, e = rm.rates(t0.Add(time.Duration(i)*time.Second), 3000, 300)
	}
	if r != 0 || e != 0 {
		t.Errorf("after quiet spell = %v, %v; want 0", r, e)
	}
	// A caller that comes back after a minute gets the average since.
	r, _ = rm.rates(t0.Add(105*time.Second), 3000+6000, 300)
	if r != 100 {
		t.Errorf("rare caller = %v, want 100", r)
	}
}

func BenchmarkMetricsMiddleware(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetKind(r, KindStatic)
		w.Write([]byte("ok"))
	}))
	req := WithInfo(httptest.NewRequest("GET", "/", nil), &Info{Site: "example.com"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := httptest.NewRecorder()
		for pb.Next() {
			h.ServeHTTP(w, req)
		}
	})
}
