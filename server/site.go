package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"shoal/handlers"
)

// site is one virtual host with its handler chain, built once per config.
type site struct {
	label   string
	hosts   []string
	trusted []netip.Prefix

	maxBody     int64
	bodyTimeout time.Duration
	sendTimeout time.Duration
	access      *handlers.AccessLog
	metrics     *handlers.Metrics

	static *handlers.Static
	errors *handlers.ErrorPages
	// chain is everything inside the outer bookkeeping of ServeHTTP.
	chain http.Handler
	// closers release what the site opened (files, roots).
	closers []io.Closer
}

// siteDeps is what a site needs from the node besides its own config.
type siteDeps struct {
	server    ServerConfig
	access    *handlers.AccessLog
	logger    *slog.Logger
	configAbs string
	metrics   *handlers.Metrics
}

func buildSite(sc SiteConfig, d siteDeps) (*site, error) {
	st := &site{
		label:       siteLabel(sc),
		hosts:       sc.Hosts,
		trusted:     d.server.Trusted(),
		maxBody:     int64(d.server.MaxBodyBytes),
		bodyTimeout: d.server.BodyTimeout,
		sendTimeout: d.server.SendTimeout,
		access:      d.access,
		metrics:     d.metrics,
		errors:      &handlers.ErrorPages{Root: sc.Root, Pages: sc.StatusPages()},
	}
	static, err := handlers.NewStatic(handlers.StaticOptions{
		Root:           sc.Root,
		Index:          sc.Index,
		Browse:         sc.Browse,
		Compress:       sc.Compress,
		FollowSymlinks: sc.FollowSymlinks,
		Errors:         st.errors,
		Hidden:         hiddenFiles(sc, d.configAbs),
		Logger:         d.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", st.label, err)
	}
	st.static = static
	st.closers = append(st.closers, static)

	var h http.Handler = http.HandlerFunc(st.dispatch)
	h = extraHeaders(sc.Headers)(h)
	st.chain = h
	return st, nil
}

func siteLabel(sc SiteConfig) string {
	if len(sc.Hosts) > 0 {
		return sc.Hosts[0]
	}
	return "default"
}

// dispatch picks the handler for a request inside the site: CGI, a
// template page, or a static file.
func (st *site) dispatch(w http.ResponseWriter, r *http.Request) {
	st.static.ServeHTTP(w, r)
}

// ServeHTTP is the outer bookkeeping every request of the site passes:
// client address, body limits, access log; then the chain.
func (st *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, info := handlers.Begin(r, st.label, st.trusted)
	rec := handlers.NewRecorder(w, st.sendTimeout)
	done := st.metrics.Track(st.label)
	defer func() {
		if rec.Status == 0 {
			if p := recover(); p != nil {
				rec.Status = http.StatusInternalServerError
				defer panic(p) // after the books, let net/http handle the panic as before
			}
		}
		done(info, rec.StatusOrOK(), rec.Bytes)
		if st.access != nil {
			st.access.Log(r, rec)
		}
	}()
	if r.ContentLength > st.maxBody {
		// Refuse before reading a byte, also for Expect: 100-continue.
		rec.Header().Set("Connection", "close")
		st.errors.Serve(rec, r, http.StatusRequestEntityTooLarge)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &bodyReader{
			ReadCloser: http.MaxBytesReader(rec, r.Body, st.maxBody),
			rc:         http.NewResponseController(w),
			timeout:    st.bodyTimeout,
		}
	}
	st.chain.ServeHTTP(rec, r)
}

// bodyReader gives each read of a request body its own deadline
// (body_timeout: the longest wait between two reads), so a trickled body
// is cut off while a slow but steady upload is not.
type bodyReader struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.timeout > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.timeout > 0 {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// IsBodyTooLarge reports whether err came from reading a body past
// max_body_bytes.
func IsBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func (st *site) close() {
	for _, c := range st.closers {
		c.Close()
	}
}

// extraHeaders adds the site's configured response headers.
func extraHeaders(headers map[string]string) func(http.Handler) http.Handler {
	if len(headers) == 0 {
		return func(h http.Handler) http.Handler { return h }
	}
	canon := make(map[string][]string, len(headers))
	for k, v := range headers {
		canon[http.CanonicalHeaderKey(k)] = []string{v}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			for k, v := range canon {
				h[k] = v
			}
			next.ServeHTTP(w, r)
		})
	}
}

// hiddenFiles names what the static handler must never serve although it
// may lie under root: the config file and the CGI folders.
func hiddenFiles(sc SiteConfig, configAbs string) func(abs string) bool {
	var files, dirs []string
	if configAbs != "" {
		files = append(files, configAbs)
		if real, err := filepath.EvalSymlinks(configAbs); err == nil {
			files = append(files, real)
		}
	}
	for _, c := range sc.CGI {
		if c.Dir != "" && c.Prefix != "" {
			d := c.Dir
			if real, err := filepath.EvalSymlinks(d); err == nil {
				d = real
			}
			dirs = append(dirs, d+string(filepath.Separator))
		}
	}
	var exts []string
	for _, c := range sc.CGI {
		exts = append(exts, c.Ext...)
	}
	return func(abs string) bool {
		for _, f := range files {
			if abs == f {
				return true
			}
		}
		for _, d := range dirs {
			if strings.HasPrefix(abs+string(filepath.Separator), d) {
				return true
			}
		}
		for _, e := range exts {
			if strings.HasSuffix(abs, e) {
				return true
			}
		}
		return false
	}
}
