package config

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"shoal/handlers/route"
	"shoal/handlers/upstream"
)

// Validate resolves relative paths and checks every value, returning all
// problems at once (Errors) or nil. Call it after flags are applied.
func (c *Config) Validate() error {
	v := &validator{c: c}
	if len(c.Sites) == 0 {
		c.Sites = []Site{DefaultSite()}
	}
	v.server()
	v.log()
	v.tls()
	v.session()
	v.upstreams()
	for i := range c.Sites {
		v.site(i, &c.Sites[i])
	}
	v.duplicateHosts()
	v.listenerClash()
	v.cluster()
	v.acme()
	if len(v.errs) == 0 {
		// Files exist and paths are resolved: now parse the certificates.
		var terrs Errors
		if err := checkCerts(c); errors.As(err, &terrs) {
			v.errs = append(v.errs, terrs...)
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	v.errs.Sort()
	return v.errs
}

type validator struct {
	c    *Config
	errs Errors
}

// oneOf checks that val is one of the allowed words.
func (v *validator) oneOf(key, val string, allowed ...string) {
	if slices.Contains(allowed, val) {
		return
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	v.fail(key, "must be one of %s, not %q", strings.Join(quoted, ", "), val)
}

func (v *validator) fail(key, format string, args ...any) {
	v.errs = append(v.errs, v.c.errAt(key, key+": "+fmt.Sprintf(format, args...)))
}

// defined reports whether key was written in the file (as opposed to a default).
func (v *validator) defined(key string) bool {
	_, ok := v.c.index.lookup(key)
	return ok
}

func (v *validator) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.c.Dir, p)
}

func (v *validator) listenAddr(key, addr string) {
	if addr == "" {
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil {
		v.fail(key, "invalid listen address %q (want host:port or :port)", addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.fail(key, "invalid port in %q", addr)
	}
}

func (v *validator) server() {
	s := &v.c.Server
	v.listenAddr("server.http", s.HTTP)
	v.listenAddr("server.https", s.HTTPS)
	v.listenAddr("server.admin", s.Admin)
	for key, d := range map[string]int64{
		"server.read_header_timeout": int64(s.ReadHeaderTimeout),
		"server.idle_timeout":        int64(s.IdleTimeout),
		"server.body_timeout":        int64(s.BodyTimeout),
		"server.send_timeout":        int64(s.SendTimeout),
		"server.shutdown_grace":      int64(s.ShutdownGrace),
		"server.drain_delay":         int64(s.DrainDelay),
	} {
		if d < 0 {
			v.fail(key, "must not be negative")
		}
	}
	if s.MaxHeaderBytes < 1024 {
		v.fail("server.max_header_bytes", "must be at least 1KiB")
	}
	if s.MaxBodyBytes <= 0 {
		v.fail("server.max_body_bytes", "must be positive")
	}
	if s.MaxConnsPerIP < 0 {
		v.fail("server.max_conns_per_ip", "must not be negative (0 = no cap)")
	}
	s.trusted = nil
	for _, p := range s.TrustedProxies {
		prefix, err := parsePrefix(p)
		if err != nil {
			v.fail("server.trusted_proxies", "invalid CIDR %q", p)
			continue
		}
		s.trusted = append(s.trusted, prefix)
	}
	if s.HTTP == "" && s.HTTPS == "" {
		v.fail("server.http", "no listener: set server.http or server.https")
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	return p.Masked(), nil
}

func (v *validator) log() {
	l := &v.c.Log
	v.oneOf("log.format", l.Format, "combined", "json")
	v.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	switch l.Access {
	case "stdout", "stderr", "off", "":
	default:
		l.Access = v.path(l.Access)
		if dir := filepath.Dir(l.Access); !isDir(dir) {
			v.fail("log.access", "folder %s does not exist", dir)
		}
	}
}

func (v *validator) tls() {
	t := &v.c.TLS
	v.oneOf("tls.min_version", t.MinVersion, "1.2", "1.3")
	v.certPair("tls", &t.Cert, &t.Key)
	if v.c.Server.HTTPS != "" && t.Cert == "" && !t.SelfSigned && !v.anySiteCert() && !v.c.ACME.Enabled {
		v.fail("server.https", "needs a certificate: set tls.cert/tls.key, a site cert, or tls.self_signed = true")
	}
	if t.RedirectHTTP && v.c.Server.HTTPS == "" {
		v.fail("tls.redirect_http", "needs server.https")
	}
	if t.HTTP3 && v.c.Server.HTTPS == "" {
		v.fail("tls.http3", "needs server.https")
	}
}

func (v *validator) anySiteCert() bool {
	for _, s := range v.c.Sites {
		if s.Cert != "" {
			return true
		}
	}
	return false
}

// certPair resolves a cert/key pair of paths and checks that both or
// neither are set and that the files can be read. Parsing them is the TLS
// code's job.
func (v *validator) certPair(prefix string, cert, key *string) {
	if (*cert == "") != (*key == "") {
		v.fail(prefix+".cert", "cert and key must be set together")
		return
	}
	for name, p := range map[string]*string{"cert": cert, "key": key} {
		if *p == "" {
			continue
		}
		*p = v.path(*p)
		if _, err := os.Stat(*p); err != nil {
			v.fail(prefix+"."+name, "cannot read %s: %v", *p, unwrapPathErr(err))
		}
	}
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func (v *validator) session() {
	s := &v.c.Session
	if s.Cookie == "" || strings.ContainsAny(s.Cookie, " ;,=\t\r\n\"") {
		v.fail("session.cookie", "invalid cookie name %q", s.Cookie)
	}
	s.SameSite = strings.ToLower(s.SameSite)
	v.oneOf("session.same_site", s.SameSite, "lax", "strict", "none")
	if s.MaxAge < 0 {
		v.fail("session.max_age", "must not be negative")
	}
	if len(s.Keys)%2 != 0 {
		v.fail("session.keys", "keys come in pairs (hash key, block key); got %d", len(s.Keys))
	}
	for i, k := range s.Keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			v.fail("session.keys", "key %d is not base64", i+1)
			continue
		}
		if i%2 == 0 && len(b) != 32 && len(b) != 64 {
			v.fail("session.keys", "hash key %d must be 32 or 64 bytes, not %d", i+1, len(b))
		}
		if i%2 == 1 && len(b) != 16 && len(b) != 24 && len(b) != 32 {
			v.fail("session.keys", "block key %d must be 16, 24 or 32 bytes, not %d", i+1, len(b))
		}
	}
	s.KeyFile = v.path(s.KeyFile)
}

func (v *validator) site(i int, s *Site) {
	key := func(k string) string { return fmt.Sprintf("site.%d.%s", i, k) }
	for _, h := range s.Hosts {
		if err := validHostPattern(h); err != nil {
			v.fail(key("hosts"), "%v", err)
		}
	}
	s.Root = v.path(s.Root)
	if !isDir(s.Root) {
		v.fail(key("root"), "root folder %s does not exist", s.Root)
	}
	s.Templates = v.path(s.Templates)
	if v.defined(key("templates")) && !isDir(s.Templates) {
		v.fail(key("templates"), "templates folder %s does not exist", s.Templates)
	}
	for _, idx := range s.Index {
		if idx == "" || strings.ContainsAny(idx, "/\\") {
			v.fail(key("index"), "index name %q must be a plain file name", idx)
		}
	}
	s.errorPages = map[int]string{}
	for code, page := range s.ErrorPages {
		n, err := strconv.Atoi(code)
		if err != nil || n < 400 || n > 599 {
			v.fail(key("error_pages"), "%q is not an error status (400-599)", code)
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Root, filepath.FromSlash(page))); err != nil {
			v.fail(key("error_pages"), "page for %d: %s not found under root", n, page)
		}
		s.errorPages[n] = page
	}
	for name, value := range s.Headers {
		if name == "" || strings.ContainsAny(name, " :\t\r\n") {
			v.fail(key("headers"), "invalid header name %q", name)
		}
		if strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			v.fail(key("headers"), "header %q: control characters in the value", name)
		}
	}
	v.certPair(fmt.Sprintf("site.%d", i), &s.Cert, &s.Key)
	for j := range s.CGI {
		v.cgi(fmt.Sprintf("site.%d.cgi.%d.", i, j), &s.CGI[j])
	}
	v.routes(i, s)
}

// routes resolves the routes' auth files and compiles them once, so that
// every route error is reported with its place; the node compiles them
// again with its shared buckets when it builds the site.
func (v *validator) routes(i int, s *Site) {
	for j := range s.Routes {
		if a := s.Routes[j].Auth; a != "" {
			s.Routes[j].Auth = v.path(a)
		}
	}
	_, errs := route.Compile(s.RouteSpecs(), route.Options{HasUpstream: v.c.HasUpstream})
	for _, err := range errs {
		var fe *route.FieldError
		if errors.As(err, &fe) {
			v.fail(fmt.Sprintf("site.%d.route.%d.%s", i, fe.Route, fe.Key), "%v", fe.Err)
		}
	}
}

func validHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.ContainsAny(name, "*/:@ ") {
		return fmt.Errorf("invalid host %q (want a name like example.com or *.example.com)", h)
	}
	return nil
}

func (v *validator) cgi(prefix string, c *CGI) {
	if c.Prefix == "" && len(c.Ext) == 0 && c.Program == "" {
		// SPEC's defaults: a mapping that names neither prefix, ext nor
		// program maps /cgi-bin/ to the cgi-bin folder (dir's default).
		c.Prefix = "/cgi-bin/"
	}
	if c.Program != "" {
		v.cgiProgram(prefix, c)
	} else if c.Prefix != "" {
		if !strings.HasPrefix(c.Prefix, "/") {
			v.fail(prefix+"prefix", "must start with /")
		}
		if !strings.HasSuffix(c.Prefix, "/") {
			c.Prefix += "/"
		}
		if c.Dir == "" {
			c.Dir = "cgi-bin"
		}
		c.Dir = v.path(c.Dir)
		if !isDir(c.Dir) {
			v.fail(prefix+"dir", "cgi folder %s does not exist", c.Dir)
		}
	}
	for _, e := range c.Ext {
		if !strings.HasPrefix(e, ".") || len(e) < 2 {
			v.fail(prefix+"ext", "extension %q must start with a dot", e)
		}
	}
	for e := range c.Interpreters {
		if !strings.HasPrefix(e, ".") {
			v.fail(prefix+"interpreters", "extension %q must start with a dot", e)
		}
	}
	if c.Timeout <= 0 {
		v.fail(prefix+"timeout", "must be positive")
	}
	if c.MaxConcurrent <= 0 {
		v.fail(prefix+"max_concurrent", "must be positive")
	}
	if c.MaxTime < 0 {
		v.fail(prefix+"max_time", "must not be negative (0 = no cap)")
	}
	if c.QueueTimeout <= 0 {
		v.fail(prefix+"queue_timeout", "must be positive")
	}
}

// cgiProgram checks a mapping that runs one program for its whole prefix.
func (v *validator) cgiProgram(prefix string, c *CGI) {
	if c.Prefix == "" {
		v.fail(prefix+"program", "needs prefix: the URL path the program answers")
	} else {
		if !strings.HasPrefix(c.Prefix, "/") {
			v.fail(prefix+"prefix", "must start with /")
		}
		if !strings.HasSuffix(c.Prefix, "/") {
			c.Prefix += "/"
		}
	}
	if v.defined(prefix + "dir") {
		v.fail(prefix+"dir", "a mapping has either dir or program, not both")
	}
	if len(c.Ext) > 0 {
		v.fail(prefix+"ext", "a mapping has either ext or program, not both")
	}
	c.Program = v.path(c.Program)
	if fi, err := os.Stat(c.Program); err != nil || !fi.Mode().IsRegular() {
		v.fail(prefix+"program", "program %s is not a file", c.Program)
	}
}

func (v *validator) cluster() {
	c := &v.c.Cluster
	if c.Gossip != "" {
		v.listenAddr("cluster.gossip", c.Gossip)
	}
	v.oneOf("cluster.mode", c.Mode, "proxy", "redirect")
	v.oneOf("cluster.policy", c.Policy, "least_loaded", "round_robin", "ip_hash", "random")
	v.oneOf("cluster.balance", c.Balance, "dynamic", "all", "none")
	if c.Capacity <= 0 {
		v.fail("cluster.capacity", "must be positive")
	}
	if c.Margin < 0 || c.Margin >= 1 {
		v.fail("cluster.margin", "must be in [0, 1)")
	}
	if c.Retries < 0 {
		v.fail("cluster.retries", "must not be negative")
	}
	if c.PeerTimeout <= 0 {
		v.fail("cluster.peer_timeout", "must be positive")
	}
	if c.Secret != "" {
		b, err := base64.StdEncoding.DecodeString(c.Secret)
		if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
			v.fail("cluster.secret", "must be base64 of 16, 24 or 32 bytes (make one with `shoal keygen`)")
		}
	}
	for _, k := range []struct{ key, val string }{{"cluster.peer_url", c.PeerURL}, {"cluster.public_url", c.PublicURL}} {
		if k.val == "" {
			continue
		}
		u, err := url.Parse(k.val)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(k.key, "must be an absolute http(s) URL, not %q", k.val)
		}
	}
}

// upstreams checks each [[upstream]]: a unique name, targets that parse,
// a root for FastCGI, a known policy, positive durations.
func (v *validator) upstreams() {
	seen := map[string]bool{}
	for i := range v.c.Upstreams {
		u := &v.c.Upstreams[i]
		key := func(k string) string { return fmt.Sprintf("upstream.%d.%s", i, k) }
		switch {
		case u.Name == "":
			v.fail(key("name"), "required: routes name the upstream")
		case seen[u.Name]:
			v.fail(key("name"), "%q is already the name of another [[upstream]]", u.Name)
		}
		seen[u.Name] = true
		if len(u.Targets) == 0 {
			v.fail(key("targets"), "needs at least one target")
		}
		fastcgi := false
		for _, t := range u.Targets {
			e, err := upstream.ParseTarget(t)
			if err != nil {
				v.fail(key("targets"), "%v", err)
			}
			fastcgi = fastcgi || e.FastCGI
		}
		if fastcgi && u.Root == "" {
			v.fail(key("root"), "a fastcgi target needs root: the document root as the FastCGI server sees it")
		}
		v.oneOf(key("policy"), u.Policy, upstream.Policies...)
		for k, d := range map[string]time.Duration{"health_interval": u.HealthInterval, "fail_timeout": u.FailTimeout,
			"connect_timeout": u.ConnectTimeout, "timeout": u.Timeout} {
			if d <= 0 {
				v.fail(key(k), "must be positive")
			}
		}
		if u.Retries < 0 {
			v.fail(key("retries"), "must not be negative")
		}
		if u.Health != "" && !strings.HasPrefix(u.Health, "/") {
			v.fail(key("health"), "must be a path starting with /, not %q", u.Health)
		}
		if u.StripPrefix != "" && !strings.HasPrefix(u.StripPrefix, "/") {
			v.fail(key("strip_prefix"), "must start with /, not %q", u.StripPrefix)
		}
		if u.Index == "" || strings.ContainsAny(u.Index, "/\\") {
			v.fail(key("index"), "must be a plain file name, not %q", u.Index)
		}
		for name, value := range u.Headers {
			n := strings.TrimPrefix(name, "-")
			if n == "" || strings.ContainsAny(n, " :\t\r\n") {
				v.fail(key("headers"), "invalid header name %q", name)
			}
			if strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
				v.fail(key("headers"), "header %q: control characters in the value", name)
			}
		}
	}
}

// acme checks [acme]. Paths are resolved even when it is off, so a later
// reload that turns it on finds them where the file says.
func (v *validator) acme() {
	a := &v.c.ACME
	a.Storage = v.path(a.Storage)
	if a.Storage == "" {
		v.fail("acme.storage", "must not be empty")
	}
	if a.RenewBefore <= 0 {
		v.fail("acme.renew_before", "must be positive")
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.fail("acme.ca", "must be an https URL of an ACME directory, not %q", a.CA)
	}
	if a.CARoot != "" {
		a.CARoot = v.path(a.CARoot)
		if pem, err := os.ReadFile(a.CARoot); err != nil {
			v.fail("acme.ca_root", "cannot read %s: %v", a.CARoot, unwrapPathErr(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.fail("acme.ca_root", "%s holds no PEM certificate", a.CARoot)
		}
	}
	if len(a.Challenges) == 0 {
		v.fail("acme.challenges", "must name at least one of \"http-01\", \"tls-alpn-01\"")
	}
	for _, c := range a.Challenges {
		v.oneOf("acme.challenges", c, "http-01", "tls-alpn-01")
	}
	if !a.Enabled {
		return
	}
	if v.c.Server.HTTPS == "" {
		v.fail("acme.enabled", "needs server.https (the certificates are served there)")
	}
	if v.c.Server.HTTP == "" && slices.Contains(a.Challenges, "http-01") {
		if v.defined("acme.challenges") || len(a.Challenges) == 1 {
			v.fail("acme.challenges", "http-01 needs server.http")
		} else {
			// The default lists both; without an http listener only
			// tls-alpn-01 can be answered.
			a.Challenges = slices.DeleteFunc(slices.Clone(a.Challenges), func(c string) bool { return c == "http-01" })
		}
	}
}
