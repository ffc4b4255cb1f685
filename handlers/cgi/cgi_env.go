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
	add("REQUEST_METHOD", r.Method)
	add("SERVER_PROTOCOL", r.Proto)
	add("REQUEST_URI", cgiRequestURI(r))
	add("QUERY_STRING", r.URL.RawQuery)
	name, port := cgiServerNamePort(r)
	add("SERVER_NAME", name)
	add("SERVER_PORT", port)
	ip := books.ClientIP(r)
	add("REMOTE_ADDR", ip)
	add("REMOTE_HOST", ip)
	if peer, rport, err := net.SplitHostPort(r.RemoteAddr); err == nil && peer == ip {
		add("REMOTE_PORT", rport) // a proxy's port says nothing about the client
	}
	if r.TLS != nil {
		add("HTTPS", "on")
	}
	if info := books.InfoFrom(r); info != nil && info.AuthType != "" {
		add("AUTH_TYPE", info.AuthType) // a route's auth checked the user
		add("REMOTE_USER", info.User)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		add("CONTENT_TYPE", ct)
	}
	if r.Host != "" {
		add("HTTP_HOST", r.Host)
	}
	for k, vs := range r.Header {
		if cgiSkippedHeaders[k] || !cgiHeaderName(k) || len(vs) == 0 {
			continue
		}
		sep := ", "
		if k == "Cookie" {
			sep = "; "
		}
		add(cgiVarName(k), strings.Join(vs, sep))
	}
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
// and SERVER_PORT from the listener that took the connection.
func cgiServerNamePort(r *http.Request) (name, port string) {
	name = r.Host
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		name, port = h, p
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		lh, lp, err := net.SplitHostPort(local.String())
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
		if r.TLS != nil {
			port = "443"
		}
	}
	return name, port
}
