package books

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"shoal/handlers/admin"
)

// Metrics holds shoal's Prometheus metrics for one process. Labels are
// low-cardinality by construction: sites and peers come from the config
// and the cluster, handler kinds and status classes are fixed sets, and no
// label ever holds a path, a query or a client address.
type Metrics struct {
	requests  *prometheus.CounterVec   // site, handler, status
	duration  *prometheus.HistogramVec // site, handler
	bytesOut  *prometheus.CounterVec   // site, handler
	inflight  *prometheus.GaugeVec     // site
	proxied   *prometheus.CounterVec   // peer
	redirects *prometheus.CounterVec   // peer
	retries   *prometheus.CounterVec   // peer
	peerFails *prometheus.CounterVec   // peer

	cgiRuns     prometheus.Counter
	cgiTimeouts prometheus.Counter
	cgiRejected prometheus.Counter
	cgi         atomic.Pointer[cgiSource]

	members *membersCollector

	// accessDropped counts access-log lines dropped because the log's
	// destination fell behind (it never makes a request wait).
	accessDropped prometheus.Counter

	// seriesMu guards series and sites, the children of the request
	// metrics already looked up.
	seriesMu sync.RWMutex
	series   map[seriesKey]*series
	sites    map[string]*siteSeries
	// lastSite is the site of the last request started: on a node that
	// serves one site mostly, StartAt needs no lookup.
	lastSite atomic.Pointer[siteSeries]

	// Totals for this node's own rates and load; atomics because every
	// request touches them.
	total, errs   atomic.Uint64
	inflightTotal atomic.Int64
	rates         rateMeter
}

type cgiSource struct{ running, queued func() int }

// latencyBuckets span a cached static file on loopback to a slow CGI script.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics creates shoal's metrics and registers them, plus the Go
// runtime and process collectors (unless reg already has them), on reg.
// Call it once per registry: a second call panics on the duplicates.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		series: map[seriesKey]*series{},
		sites:  map[string]*siteSeries{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_http_requests_total",
			Help: "HTTP requests answered, by site, handler kind and status class.",
		}, []string{"site", "handler", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_http_request_duration_seconds",
			Help:    "Time from request to the handler's return, by site and handler kind.",
			Buckets: latencyBuckets,
		}, []string{"site", "handler"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_http_response_bytes_total",
			Help: "Response body bytes written, by site and handler kind.",
		}, []string{"site", "handler"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoal_http_requests_in_flight",
			Help: "Requests being served now, by site.",
		}, []string{"site"}),
		proxied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_cluster_proxied_total",
			Help: "Requests this node proxied to a peer, by peer.",
		}, []string{"peer"}),
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_cluster_redirected_total",
			Help: "Requests this node redirected to a peer, by peer.",
		}, []string{"peer"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_cluster_retries_total",
			Help: "Proxied requests that were retried after a peer failed, by the node that finally served them (\"\" for this node).",
		}, []string{"peer"}),
		peerFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_cluster_peer_failures_total",
			Help: "Failed attempts to reach a peer (connect errors, bad gateway), by peer.",
		}, []string{"peer"}),
		cgiRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_cgi_runs_total",
			Help: "CGI processes started.",
		}),
		cgiTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_cgi_timeouts_total",
			Help: "CGI processes killed for overrunning their timeout.",
		}),
		cgiRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_cgi_rejected_total",
			Help: "CGI requests refused with 503 because max_concurrent and the queue were full.",
		}),
		members: newMembersCollector(),
		accessDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_access_log_dropped_total",
			Help: "Access-log lines dropped because the log's destination could not keep up.",
		}),
	}
	reg.MustRegister(m.accessDropped)
	reg.MustRegister(m.requests, m.duration, m.bytesOut, m.inflight,
		m.proxied, m.redirects, m.retries, m.peerFails,
		m.cgiRuns, m.cgiTimeouts, m.cgiRejected, m.members,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_cgi_running",
			Help: "CGI processes running now.",
		}, func() float64 { return float64(m.CGIRunning()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_cgi_queued",
			Help: "CGI requests waiting for a free slot.",
		}, func() float64 { return float64(m.cgiQueued()) }),
	)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				panic(err)
			}
		}
	}
	return m
}

// Middleware measures every request through next: count, latency and
// bytes by site and handler kind, in-flight by site. The site comes from
// the request's Info when it arrives, the handler kind and peer once next
// has returned (inner handlers call SetKind). Proxied and redirected
// requests are also counted by Info.Peer.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, ok := r.Context().Value(infoKey{}).(*Info)
		if !ok {
			info = &Info{}
			r = WithInfo(r, info)
		}
		done := m.Track(info.Site)
		rec := NewRecorder(w, 0)
		finished := false
		defer func() {
			if !finished && rec.Status == 0 {
				rec.Status = http.StatusInternalServerError // next panicked before answering
			}
			done(info, rec.Status, rec.Bytes)
		}()
		next.ServeHTTP(rec, r)
		finished = true
	})
}

// Track is Middleware for a caller that already records the status and
// bytes (such as the access log's Recorder): it counts the request in
// flight now and returns the function to call when it is answered. Status
// 0 counts as 200 (a handler that wrote nothing).
func (m *Metrics) Track(site string) func(info *Info, status int, bytes int64) {
	sp := m.Start(site)
	return sp.End
}

// Span is one request being measured: Start it when the request arrives,
// End it when it is answered. A value type, so the hot path allocates
// nothing for it.
type Span struct {
	m     *Metrics
	site  *siteSeries
	start time.Time
}

// siteSeries is a site's in-flight gauge and the series its last answer
// went to, so that a run of answers of one kind and status finds them
// without a lookup.
type siteSeries struct {
	label string
	gauge prometheus.Gauge
	last  atomic.Pointer[lastSeries]
}

// lastSeries is the series of answers of one handler kind and status.
type lastSeries struct {
	kind   string
	status int
	se     *series
}

// Start counts a request of site in flight.
func (m *Metrics) Start(site string) Span { return m.StartAt(site, time.Now()) }

// StartAt is Start for a request that arrived at start: a caller that
// read the clock already passes its reading instead of a second one.
func (m *Metrics) StartAt(site string, start time.Time) Span {
	sp := Span{m: m, site: m.siteFor(siteLabel(site)), start: start}
	sp.site.gauge.Inc()
	m.inflightTotal.Add(1)
	return sp
}

// End records the answered request. Status 0 counts as 200.
func (sp Span) End(info *Info, status int, bytes int64) { sp.EndAt(info, status, bytes, time.Now()) }

// EndAt is End for a request answered at now.
func (sp Span) EndAt(info *Info, status int, bytes int64, now time.Time) {
	sp.site.gauge.Dec()
	sp.m.inflightTotal.Add(-1)
	sp.m.observe(info, sp.site, status, bytes, now.Sub(sp.start))
}

func (m *Metrics) observe(info *Info, site *siteSeries, status int, bytes int64, took time.Duration) {
	kind := kindLabel(info.Handler)
	if status == 0 {
		status = http.StatusOK
	}
	var se *series
	if l := site.last.Load(); l != nil && l.status == status && l.kind == kind {
		se = l.se
	} else {
		se = m.seriesFor(site.label, kind, statusLabel(status))
		site.last.Store(&lastSeries{kind: kind, status: status, se: se})
	}
	se.requests.Inc()
	se.duration.Observe(took.Seconds())
	if bytes > 0 {
		se.bytes.Add(float64(bytes))
	}
	m.total.Add(1)
	if status >= 500 {
		m.errs.Add(1)
	}
	if info.Peer != "" {
		switch info.Handler {
		case KindProxy:
			m.proxied.WithLabelValues(info.Peer).Inc()
		case KindRedirect:
			m.redirects.WithLabelValues(info.Peer).Inc()
		}
	}
}

// seriesKey names the children of the request metrics for one site,
// handler kind and status class.
type seriesKey struct{ site, kind, class string }

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
	bytes    prometheus.Counter
}

// seriesFor returns the metric children for a key, looked up in the vecs
// (hashing and validating label values) only the first time: every
// request needs them.
func (m *Metrics) seriesFor(site, kind, class string) *series {
	k := seriesKey{site, kind, class}
	m.seriesMu.RLock()
	se := m.series[k]
	m.seriesMu.RUnlock()
	if se != nil {
		return se
	}
	se = &series{
		requests: m.requests.WithLabelValues(site, kind, class),
		duration: m.duration.WithLabelValues(site, kind),
		bytes:    m.bytesOut.WithLabelValues(site, kind),
	}
	m.seriesMu.Lock()
	m.series[k] = se
	m.seriesMu.Unlock()
	return se
}

// siteFor returns site's gauge and series cache, made at its first
// request.
func (m *Metrics) siteFor(site string) *siteSeries {
	if ss := m.lastSite.Load(); ss != nil && ss.label == site {
		return ss
	}
	m.seriesMu.RLock()
	ss := m.sites[site]
	m.seriesMu.RUnlock()
	if ss == nil {
		m.seriesMu.Lock()
		if ss = m.sites[site]; ss == nil {
			ss = &siteSeries{label: site, gauge: m.inflight.WithLabelValues(site)}
			m.sites[site] = ss
		}
		m.seriesMu.Unlock()
	}
	m.lastSite.Store(ss)
	return ss
}

func siteLabel(site string) string {
	if site == "" {
		return "default"
	}
	return site
}

// kindLabel keeps the handler label to the known kinds, so a typo in a
// caller cannot mint new series.
func kindLabel(kind string) string {
	switch kind {
	case KindStatic, KindTemplate, KindCGI, KindProxy, KindUpstream, KindRedirect, KindAdmin:
		return kind
	}
	return "other"
}

// statusLabel is the status code as a label: a few dozen values at most,
// since a code outside 100-599 counts as "other".
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// ObserveCGI tells the metrics where to read how many CGI processes run
// and wait now (summed over sites by the caller); either may be nil.
func (m *Metrics) ObserveCGI(running, queued func() int) {
	m.cgi.Store(&cgiSource{running: running, queued: queued})
}

// CGIRunning is the number of CGI processes running now, for Member.
func (m *Metrics) CGIRunning() int {
	if s := m.cgi.Load(); s != nil && s.running != nil {
		return s.running()
	}
	return 0
}

func (m *Metrics) cgiQueued() int {
	if s := m.cgi.Load(); s != nil && s.queued != nil {
		return s.queued()
	}
	return 0
}

// CGIStarted counts one CGI process start.
func (m *Metrics) CGIStarted() { m.cgiRuns.Inc() }

// CGITimedOut counts one CGI process killed for its timeout.
func (m *Metrics) CGITimedOut() { m.cgiTimeouts.Inc() }

// CGIRejected counts one CGI request refused because every slot was busy.
func (m *Metrics) CGIRejected() { m.cgiRejected.Inc() }

// AccessLogDropped counts one access-log line dropped (the log's queue
// was full).
func (m *Metrics) AccessLogDropped() { m.accessDropped.Inc() }

// Retried counts a request retried elsewhere because peer failed it.
func (m *Metrics) Retried(peer string) { m.retries.WithLabelValues(peer).Inc() }

// PeerFailed counts a failed attempt to reach peer.
func (m *Metrics) PeerFailed(peer string) { m.peerFails.WithLabelValues(peer).Inc() }

// WatchCluster makes shoal_cluster_members report v's members by state.
func (m *Metrics) WatchCluster(v admin.ClusterView) { m.members.view.Store(&viewRef{v}) }

// InFlight is the number of requests inside Middleware now, all sites.
func (m *Metrics) InFlight() int { return int(m.inflightTotal.Load()) }

// Rates returns this node's requests per second and 5xx answers per
// second over about the last ten seconds. Call it often (each load report
// or status poll does): the window is measured between calls.
func (m *Metrics) Rates() (requests, errors float64) {
	return m.rates.rates(time.Now(), m.total.Load(), m.errs.Load())
}

// Fill sets the fields of this node's Member that the metrics know:
// requests/s, 5xx/s and CGI processes running.
func (m *Metrics) Fill(mem *admin.Member) {
	mem.RequestsPerSec, mem.ErrorsPerSec = m.Rates()
	mem.CGIRunning = m.CGIRunning()
}

// rateMeter turns two monotonic counters into per-second rates from
// samples taken when asked, so the request path pays nothing for it.
type rateMeter struct {
	// mu guards samples and next.
	mu      sync.Mutex
	samples [rateSamples]rateSample
	next    int
}

const (
	rateSamples = 12
	rateWindow  = 10 * time.Second
	rateStep    = time.Second
)

type rateSample struct {
	at          time.Time
	total, errs uint64
}

func (rm *rateMeter) rates(now time.Time, total, errs uint64) (float64, float64) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	newest := rm.samples[(rm.next+rateSamples-1)%rateSamples]
	if newest.at.IsZero() || now.Sub(newest.at) >= rateStep {
		rm.samples[rm.next] = rateSample{at: now, total: total, errs: errs}
		rm.next = (rm.next + 1) % rateSamples
	}
	// The reference is the oldest sample inside the window; when every
	// sample is older (rare callers), the newest of them. Samples run
	// oldest to newest from next.
	var ref rateSample
	for i := range rateSamples {
		s := rm.samples[(rm.next+i)%rateSamples]
		if s.at.IsZero() || now.Sub(s.at) < rateStep/2 {
			continue
		}
		ref = s
		if now.Sub(s.at) <= rateWindow {
			break
		}
	}
	if ref.at.IsZero() {
		return 0, 0
	}
	secs := now.Sub(ref.at).Seconds()
	return float64(total-ref.total) / secs, float64(errs-ref.errs) / secs
}

// viewRef boxes an interface for atomic.Pointer.
type viewRef struct{ v admin.ClusterView }

// membersCollector reports cluster members by state when scraped, so the
// numbers are never older than the scrape.
type membersCollector struct {
	desc *prometheus.Desc
	view atomic.Pointer[viewRef]
}

func newMembersCollector() *membersCollector {
	return &membersCollector{desc: prometheus.NewDesc("shoal_cluster_members",
		"Cluster members as this node sees them, by state.", []string{"state"}, nil)}
}

func (c *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *membersCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{admin.StateAlive: 0, admin.StateSuspect: 0, admin.StateDead: 0, admin.StateLeft: 0}
	if ref := c.view.Load(); ref != nil && ref.v != nil {
		for _, mem := range ref.v.Members() {
			if _, known := counts[mem.State]; known {
				counts[mem.State]++
			}
		}
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}
