package upstream

import (
	"errors"
	"net/http"
	"time"

	"shoal/handlers/fastcgi"
)

// fastcgiTarget is a FastCGI application's connection pool.
type fastcgiTarget struct {
	client *fastcgi.Client
}

func (u *Upstream) newFastCGI(t *target) *fastcgiTarget {
	c := &fastcgi.Client{Network: t.Network, Address: t.Address, MaxConns: u.opts.FastCGIMaxConns,
		DialTimeout: u.opts.connectTimeout()}
	c.Dialed = func(err error) {
		if err != nil {
			u.markFailed(t, err)
		}
	}
	return &fastcgiTarget{client: c}
}

// handler is the FastCGI handler that serves a site's requests on t.
func (f *fastcgiTarget) handler(u *Upstream, s Site) *fastcgi.Handler {
	return &fastcgi.Handler{Client: f.client, Root: u.opts.Root, Index: u.opts.Index, Split: u.opts.Split,
		Env: u.opts.Env, NodeName: u.opts.NodeName, Timeout: u.opts.timeout(), MaxBodyBytes: s.MaxBodyBytes,
		Sessions: s.Sessions, User: s.User, Errors: s.Errors, Dispatch: s.Dispatch, Logger: u.log}
}

// check runs the health path as a script and reads the status it gives.
func (f *fastcgiTarget) check(u *Upstream, path string, timeout time.Duration) error {
	r, err := http.NewRequest(http.MethodGet, "http://localhost"+path, nil)
	if err != nil {
		return err
	}
	r.RemoteAddr = "127.0.0.1:0"
	h := f.handler(u, Site{})
	h.Timeout = timeout
	h.Logger = discardLogger
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status < 200 || rec.status > 399 {
		return errors.New("upstream: health check answered " + http.StatusText(rec.status))
	}
	return nil
}

// statusRecorder keeps a response's status and drops its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
func (s *statusRecorder) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(p), nil
}
