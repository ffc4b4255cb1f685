package cgi

import (
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"shoal/handlers/books"
)

// cgiSkippedHeaders never become HTTP_* variables: Proxy would set HTTP_PROXY,
// which many HTTP clients take as their proxy (httpoxy); Session would
// shadow the server's HTTP_SESSION; credentials stay with the server, as
// Apache does without CGIPassAuth; the content headers are CONTENT_*.
var cgiSkippedHeaders = map[string]bool{
	"Proxy": true, "Session": true, "Authorization": true, "Proxy-Authorization": true,
	"Content-Type": true, "Content-Length": true,
}

// environ builds the script's environment: RFC 3875 meta-variables, the
// usual extensions (Apache's REQUEST_URI, SCRIPT_FILENAME, DOCUMENT_ROOT,
// HTTPS, REMOTE_PORT), HTTP_* from the request, then the site's variables.
func (h *Handler) environ(r *http.Request, sc *cgiScript, contentLength int64, session string) []string {
	st := h.state()
	env := make([]string, 0, 24+len(r.Header)+len(st.env))
	env = append(env, st.env...)
	add := func(k, v string) { env = append(env, k+"="+strings.ReplaceAll(v, "\x00", "")) }

	add("SCRIPT_NAME", sc.name)
	add("SCRIPT_FILENAME", sc.file)
	if sc.pathInfo != "" {
		add("PATH_INFO", sc.pathInfo)
		add("PATH_TRANSLATED", filepath.Join(st.root, filepath.FromSlash(sc.pathInfo)))
	}
	if contentLength >= 0 {
		add("CONTENT_LENGTH", strconv.FormatInt(contentLength, 10))
	}
	if session != "" {
		add("HTTP_SESSION", session)
	}
	RequestVars(r, add)
	return env
}

// RequestVars adds the meta-variables that depend on the request alone
// (RFC 3875 and Apache's usual extensions: REQUEST_METHOD, SERVER_*,
// REQUEST_URI, QUERY_STRING, REMOTE_*, HTTPS, CONTENT_TYPE, HTTP_HOST and
// the client's headers as HTTP_*, never HTTP_PROXY, HTTP_SESSION nor
// HTTP_AUTHORIZATION), for CGI and FastCGI alike. The script's names,
// CONTENT_LENGTH and the session are the caller's.
func RequestVars(r *http.Request, add func(name, value string)) {
	m := MetaOf(r)
	m.Vars(add)
}

// Meta is what the request's meta-variables are made of, read from an
// *http.Request (MetaOf) or from a server's own parse of a request (its
// HTTP/1.1 fast path): one function, Vars, turns either into the same
// variables.
type Meta struct {
	// Method and Proto are REQUEST_METHOD and SERVER_PROTOCOL.
	Method, Proto string
	// URI is REQUEST_URI (a path: see cgiRequestURI), Query QUERY_STRING.
	URI, Query string
	// Host is the Host the client asked for; Local the connection's own
	// address, as net/http's LocalAddrContextKey ("": unknown), for
	// SERVER_PORT.
	Host, Local string
	// RemoteAddr is the connection's peer (host:port); ClientIP the client
	// as the site sees it (behind trusted proxies, the one they name).
	RemoteAddr, ClientIP string
	// TLS: the client came over TLS (HTTPS=on).
	TLS bool
	// AuthType and User: a route's auth checked the user ("": none).
	AuthType, User string
	// Header holds the client's fields (Host apart), as net/http keeps
	// them; or, when nil, Lines does: the header block as the client sent
	// it ("Name: value\r\n" lines, checked), read as net/http would have
	// (see LineFields), with X-Request-Id replaced by RequestID.
	Header    http.Header
	Lines     []byte
	RequestID string
}

// MetaOf reads r's meta-variables' parts.
func MetaOf(r *http.Request) Meta {
	m := Meta{Method: r.Method, Proto: r.Proto, URI: cgiRequestURI(r), Query: r.URL.RawQuery, Host: r.Host,
		RemoteAddr: r.RemoteAddr, ClientIP: books.ClientIP(r), TLS: r.TLS != nil, Header: r.Header}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		m.Local = local.String()
	}
	if info := books.InfoFrom(r); info != nil && info.AuthType != "" {
		m.AuthType, m.User = info.AuthType, info.User
	}
	return m
}

// Vars adds the variables RequestVars documents.
func (m *Meta) Vars(add func(name, value string)) {
	add("REQUEST_METHOD", m.Method)
	add("SERVER_PROTOCOL", m.Proto)
	add("REQUEST_URI", m.URI)
	add("QUERY_STRING", m.Query)
	name, port := cgiServerNamePort(m.Host, m.Local, m.TLS)
	add("SERVER_NAME", name)
	add("SERVER_PORT", port)
	ip := m.ClientIP
	add("REMOTE_ADDR", ip)
	add("REMOTE_HOST", ip)
	if peer, rport, err := net.SplitHostPort(m.RemoteAddr); err == nil && peer == ip {
		add("REMOTE_PORT", rport) // a proxy's port says nothing about the client
	}
	if m.TLS {
		add("HTTPS", "on")
	}
	if m.AuthType != "" {
		add("AUTH_TYPE", m.AuthType) // a route's auth checked the user
		add("REMOTE_USER", m.User)
	}
	if m.Header == nil {
		lf := LineFields{Lines: m.Lines, RequestID: m.RequestID}
		lf.vars(m.Host, add)
		return
	}
	if ct := m.Header.Get("Content-Type"); ct != "" {
		add("CONTENT_TYPE", ct)
	}
	if m.Host != "" {
		add("HTTP_HOST", m.Host)
	}
	for k, vs := range m.Header {
		if cgiSkippedHeaders[k] || !cgiHeaderName(k) || len(vs) == 0 {
			continue
		}
		add(cgiVarName(k), joinValues(k, vs))
	}
}

// joinValues joins the values of one field as a script sees them.
func joinValues(k string, vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	sep := ", "
	if k == "Cookie" {
		sep = "; "
	}
	return strings.Join(vs, sep)
}

// cgiHeaderName accepts only letters, digits and '-' in a header name (as
// Apache 2.4 does): "X_Forwarded_For" would otherwise arrive as
// HTTP_X_FORWARDED_FOR, indistinguishable from the real X-Forwarded-For.
func cgiHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func cgiVarName(k string) string {
	b := make([]byte, 5+len(k))
	copy(b, "HTTP_")
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b[5+i] = c
	}
	return string(b)
}

// cgiRequestURI is the request target as the client sent it, but as a path
// even when the client used the absolute form (GET http://host/path).
func cgiRequestURI(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// cgiServerNamePort returns SERVER_NAME from the Host the client asked for
// and SERVER_PORT from the listener that took the connection (local, its
// address; "": unknown).
func cgiServerNamePort(host, local string, tls bool) (name, port string) {
	name = host
	// Without a colon SplitHostPort fails, allocating its error.
	if strings.IndexByte(host, ':') >= 0 {
		if h, p, err := net.SplitHostPort(host); err == nil {
			name, port = h, p
		}
	}
	if local != "" {
		lh, lp, err := net.SplitHostPort(local)
		if err == nil {
			port = lp
			if name == "" {
				name = lh
			}
		}
	}
	if strings.IndexByte(name, ':') >= 0 {
		name = "[" + name + "]"
	}
	if port == "" {
		port = "80"
		if tls {
			port = "443"
		}
	}
	return name, port
}
