package server

import (
	"context"
	"net"
	"net/http"

	"shoal/cluster"
	"shoal/server/config"
)

// loadCerts makes or reloads the certificate manager for cfg. A broken
// certificate fails here, before anything of the new config is used.
func (n *Node) loadCerts(cfg *config.Config) error {
	if cfg.Server.HTTPS == "" {
		return nil // an existing manager stays idle until a restart
	}
	if n.certs == nil {
		m, err := newCertManager(withACMEFallback(cfg), cfg.Sites, n.log)
		if err != nil {
			return err
		}
		if cfg.ACME.Enabled {
			m.acceptACMEALPN()
		}
		n.certs = m
		return n.shareTickets(cfg)
	}
	if err := n.certs.Reload(withACMEFallback(cfg), cfg.Sites); err != nil {
		return err
	}
	n.certs.manageACME(cfg)
	return n.shareTickets(cfg)
}

// serveHTTP is the plain-HTTP listener: ACME http-01 challenges first,
// then redirect_http answers 308 to https for hosts that have a
// certificate; everything else is served.
func (n *Node) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if n.certs != nil && n.certs.answerACME(w, r) {
		return
	}
	rt := n.state.Load()
	// A request over TLS here came from a peer (peer TLS): no client to
	// send to HTTPS.
	if h := rt.redirect.Load(); h != nil && !cluster.OverPeerTLS(r) {
		// Inside the books of the site the request names, as every answer.
		rt.vhosts.match(r.Host).serveBooked(w, r, *h)
		return
	}
	n.ServeHTTP(w, r)
}

func (rt *runtime) setRedirect(h http.Handler) {
	if h != nil {
		rt.redirect.Store(&h)
	}
}

// serveHTTPS is the TLS listener (and HTTP/3): HSTS and Alt-Svc, then the
// sites.
func (n *Node) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	alt := ""
	if p := n.altSvc.Load(); p != nil {
		alt = *p
	}
	setHTTPSHeaders(w.Header(), r, n.state.Load().cfg.TLS.HSTS, alt)
	n.ServeHTTP(w, r)
}

// redirectFor builds the http listener's redirect for cfg, or nil.
func (n *Node) redirectFor(cfg *config.Config) http.Handler {
	if !cfg.TLS.RedirectHTTP || n.certs == nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(cfg.Server.HTTPS)
	if bound, ok := n.Addrs()["https"]; ok {
		_, port, _ = net.SplitHostPort(bound)
	}
	return redirectHTTPS(redirectOptions{Sites: cfg.Sites, HTTPSPort: port,
		HasTLS: n.certs.HasTLS, Covers: n.certs.Covers})(n)
}

// startHTTP3 serves HTTP/3 on the https port's UDP twin when tls.http3 is on.
func (n *Node) startHTTP3(cfg *config.Config) error {
	addr, ok := n.Addrs()["https"]
	if !cfg.TLS.HTTP3 || !ok || n.certs == nil {
		return nil
	}
	h3, err := startHTTP3(http3Options{
		Addr:           addr,
		TLS:            n.certs.TLSConfig(),
		Handler:        n.cl.guard(http.HandlerFunc(n.serveHTTPS)),
		MaxHeaderBytes: int(cfg.Server.MaxHeaderBytes),
		IdleTimeout:    cfg.Server.IdleTimeout,
		Log:            n.log,
	})
	if err != nil {
		return err
	}
	n.http3 = h3
	alt := h3.AltSvc()
	n.altSvc.Store(&alt)
	return nil
}

// stopTLS ends HTTP/3 and ticket rotation at shutdown.
func (n *Node) stopTLS(ctx context.Context) {
	if n.http3 != nil {
		if err := n.http3.Shutdown(ctx); err != nil {
			n.log.Warn("http3 shutdown", "err", err)
		}
	}
	if n.certs != nil {
		n.certs.Close()
	}
}
