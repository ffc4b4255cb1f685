package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Member states, as /api/cluster reports them.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Member is one node of the cluster as a node sees it. The JSON names are
// the /api/cluster contract.
type Member struct {
	Name           string    `json:"name"`
	State          string    `json:"state"` // alive | suspect | dead | left
	Load           float64   `json:"load"`  // in-flight / capacity
	Inflight       int       `json:"inflight"`
	Capacity       int       `json:"capacity"`
	Draining       bool      `json:"draining"`
	PeerURL        string    `json:"peer_url"`
	PublicURL      string    `json:"public_url"`
	Config         string    `json:"config"` // short hash of the effective config
	Version        string    `json:"version"`
	Started        time.Time `json:"started,omitzero"`
	RequestsPerSec float64   `json:"requests_per_sec"`
	ErrorsPerSec   float64   `json:"errors_per_sec"` // 5xx answers per second
	CGIRunning     int       `json:"cgi_running"`

	// Sites is the member's hash of each of this node's sites, by site
	// name; Drift names the sites whose hash differs from this node's
	// (their requests are never sent to that member).
	Sites map[string]string `json:"sites,omitempty"`
	Drift []string          `json:"drift,omitempty"`
}

// ClusterView is what the admin pages need from the cluster. A node
// without a cluster implements it by reporting itself alone.
type ClusterView interface {
	// Self is this node's name.
	Self() string
	// Members is every known member, this node included.
	Members() []Member
}

// Site describes one of this node's sites for the status page.
type Site struct {
	Hosts []string // [] means any host
	Root  string
	CGI   []string // URL prefixes or extensions that run CGI
}

// Certificate is one certificate a node serves, as /api/certificates
// lists it.
type Certificate struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	NotAfter  time.Time `json:"not_after"`
	Source    string    `json:"source"`               // file | self_signed | acme
	OrderedBy string    `json:"ordered_by,omitempty"` // acme: the node that ordered it
	Serial    string    `json:"serial"`               // hex
}

// ClusterStatus is the body of /api/cluster.
type ClusterStatus struct {
	Self    string    `json:"self"`
	Members []Member  `json:"members"`
	Time    time.Time `json:"time"` // the answering node's clock, for uptimes
}

// Server serves the admin listener: the status page, /api/cluster,
// /metrics, /healthz and POST /api/reload. Every field may be zero.
type Server struct {
	// View is the cluster as this node sees it; nil shows no members.
	View ClusterView
	// Draining reports whether the node is shutting down, so /healthz
	// answers 503 and outside balancers stop sending; nil means never.
	Draining func() bool
	// Reload re-reads and applies the config; the errors it returns are
	// shown to the caller one per line. nil answers 501.
	Reload func() error
	// Gatherer is what /metrics exposes; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Sites and Listeners are shown on the status page as this node's.
	Sites     []Site
	Listeners []string
	// Describe, when set, is asked for the sites and listeners on every
	// page view instead of Sites and Listeners, so a reload shows at once.
	Describe func() (sites []Site, listeners []string)
	// Upstreams returns the list /api/upstreams answers under "upstreams"
	// (each upstream's targets and health); nil answers an empty list.
	Upstreams func() any
	// Version is shown on the status page.
	Version string
	// Certificates lists what the https listener serves, for
	// /api/certificates and the status page; nil lists none.
	Certificates func() []Certificate
	// Logger gets reload results and failures; nil means slog.Default().
	Logger *slog.Logger
}

// Handler returns the admin listener's handler. Unknown paths get 404.
func (a *Server) Handler() http.Handler {
	s := &adminServer{Server: a}
	mux := http.NewServeMux()
	// Patterns carry no method so that a wrong method reaches onlyMethod
	// (405 with Allow) rather than the catch-all 404.
	mux.Handle("/{$}", onlyMethod(http.MethodGet, http.HandlerFunc(s.page)))
	mux.Handle("/static/", onlyMethod(http.MethodGet, s.static()))
	mux.Handle("/api/cluster", onlyMethod(http.MethodGet, http.HandlerFunc(s.cluster)))
	mux.Handle("/api/upstreams", onlyMethod(http.MethodGet, http.HandlerFunc(s.upstreams)))
	mux.Handle("/metrics", onlyMethod(http.MethodGet, s.metrics()))
	mux.Handle("/healthz", onlyMethod(http.MethodGet, http.HandlerFunc(s.healthz)))
	mux.Handle("/api/certificates", onlyMethod(http.MethodGet, http.HandlerFunc(s.certificates)))
	// A web page the admin's browser visits must not be able to trigger a
	// reload on a loopback admin port: refuse cross-origin POSTs.
	mux.Handle("/api/reload", onlyMethod(http.MethodPost,
		http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.reload))))
	mux.HandleFunc("/", notFound)
	return securityHeaders(loopbackHosts(mux))
}

// adminServer holds Handler's state, so a Server literal stays plain data.
type adminServer struct {
	*Server

	// reloadMu serialises reloads so two callers never interleave a swap.
	reloadMu sync.Mutex
}

func (s *adminServer) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *adminServer) status() ClusterStatus {
	st := ClusterStatus{Members: []Member{}, Time: time.Now().UTC()}
	if s.View == nil {
		return st
	}
	st.Self = s.View.Self()
	if ms := s.View.Members(); ms != nil {
		st.Members = slices.Clone(ms)
	}
	slices.SortStableFunc(st.Members, func(a, b Member) int { return NaturalCompare(a.Name, b.Name) })
	return st
}

func (s *adminServer) certList() []Certificate {
	certs := []Certificate{}
	if s.Certificates != nil {
		certs = append(certs, s.Certificates()...)
	}
	return certs
}

func (s *adminServer) certificates(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string][]Certificate{"certificates": s.certList()})
}

func (s *adminServer) cluster(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.status())
}

func (s *adminServer) upstreams(w http.ResponseWriter, r *http.Request) {
	var list any = []any{}
	if s.Upstreams != nil {
		list = s.Upstreams()
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"upstreams": list})
}

func (s *adminServer) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.Draining != nil && s.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *adminServer) metrics() http.Handler {
	g := s.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slogPrintln{s.logger()},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// reload answers 200 with "reloaded" or 422 with every config error, as
// JSON ({"errors": [...]}) unless the client prefers text/plain.
func (s *adminServer) reload(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.Reload == nil {
		http.Error(w, "reload is not available on this node", http.StatusNotImplemented)
		return
	}
	s.reloadMu.Lock()
	err := s.Reload()
	s.reloadMu.Unlock()
	text := prefersText(r)
	if err == nil {
		s.logger().Info("config reloaded", "via", "admin api", "remote", r.RemoteAddr)
		if text {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("reloaded\n"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"reloaded": true})
		return
	}
	msgs := errorLines(err)
	s.logger().Warn("config reload failed, keeping the old config", "via", "admin api", "errors", msgs)
	if text {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnprocessableEntity)
		w.Write([]byte(strings.Join(msgs, "\n") + "\n"))
		return
	}
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"reloaded": false, "errors": msgs})
}

// errorLines splits err into one message per problem: joined errors and
// config error lists both put one problem on each line.
func errorLines(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		for line := range strings.SplitSeq(e.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
	}
	walk(err)
	if len(out) == 0 {
		out = []string{"reload failed"}
	}
	return out
}

func prefersText(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/plain") && !strings.Contains(accept, "json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// onlyMethod answers 405 with Allow for any method but method (and HEAD,
// when method is GET).
func onlyMethod(method string, next http.Handler) http.Handler {
	allow := method
	if method == http.MethodGet {
		allow = "GET, HEAD"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", allow)
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "404 not found", http.StatusNotFound)
}

// pageCSP allows only the page's own scripts, styles and API: the status
// page has no inline code, so a stolen-markup injection cannot run.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", pageCSP)
		next.ServeHTTP(w, r)
	})
}

// loopbackHosts refuses, on a loopback listener, a Host that is a DNS
// name other than localhost: that is how DNS rebinding lets a web page
// read /api/cluster or POST a reload as if it were same-origin.
func loopbackHosts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if tcp, ok := local.(*net.TCPAddr); ok && tcp.IP.IsLoopback() && !loopbackName(r.Host) {
			http.Error(w, "403 forbidden: use localhost or an IP address for the admin listener", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackName(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "" || host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// slogPrintln adapts a slog.Logger to promhttp's Println-style logger.
type slogPrintln struct{ l *slog.Logger }

func (p slogPrintln) Println(v ...any) {
	p.l.Error("metrics gathering failed", "error", strings.TrimSpace(fmt.Sprintln(v...)))
}
