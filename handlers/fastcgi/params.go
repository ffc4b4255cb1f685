package fastcgi

import (
	"cmp"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"shoal/handlers/cgi"
)

// ParamsOptions says how a request maps to a script on the application's
// side; the zero value of each field has the meaning its comment gives.
type ParamsOptions struct {
	// Root is the document root as the application sees it (it may be
	// another machine's): DOCUMENT_ROOT, and SCRIPT_FILENAME = Root +
	// SCRIPT_NAME.
	Root string
	// Index is the script for a path ending in "/". "": index.php.
	Index string
	// Split ends SCRIPT_NAME where it ends a path segment; the rest is
	// PATH_INFO ("/a.php/b" -> "/a.php" + "/b"). "": .php.
	Split string
	// Env holds extra parameters; they never replace one set from the
	// request.
	Env map[string]string
	// NodeName is passed as SHOAL_NODE when set.
	NodeName string
	// ContentLength is CONTENT_LENGTH; negative: the request has no body.
	ContentLength int64
	// Session is HTTP_SESSION (the url-encoded session) when not "".
	Session string
	// User and AuthType are REMOTE_USER and AUTH_TYPE when not "".
	User, AuthType string
}

// errUncleanPath: a path with a NUL or a "." or ".." segment never names a
// script (the application would resolve it against its own file system).
var errUncleanPath = errors.New("fastcgi: unclean path")

// SplitPath splits the URL path p into SCRIPT_NAME and PATH_INFO: a path
// ending in "/" gets index appended, and the script ends at the first
// segment that ends with split ("/doku.php/wiki/start" -> "/doku.php",
// "/wiki/start"). Without split in p, all of p is the script.
func SplitPath(p, index, split string) (name, pathInfo string) {
	if strings.HasSuffix(p, "/") {
		p += index
	}
	for i := 0; i < len(p); {
		j := strings.Index(p[i:], split)
		if j < 0 {
			break
		}
		end := i + j + len(split)
		if end == len(p) || p[end] == '/' {
			return p[:end], p[end:]
		}
		i = end
	}
	return p, ""
}

// Params builds a responder's parameters for r the way cgi.Handler builds
// a script's environment: RFC 3875 meta-variables, REQUEST_URI,
// SCRIPT_FILENAME, DOCUMENT_ROOT, HTTPS, REDIRECT_STATUS (php-fpm's
// cgi.force_redirect), the client's headers as HTTP_* (never HTTP_PROXY),
// then o.Env. It refuses a path that is not clean.
func Params(r *http.Request, o ParamsOptions) ([]Param, error) {
	site := newSiteParams(o.Root, o.Index, o.Split, o.Env)
	s := paramSink{site: site, list: make([]Param, 0, 32+len(r.Header)+len(o.Env))}
	m := cgi.MetaOf(r)
	if _, _, err := s.build(r.URL.Path, &m, &o); err != nil {
		return nil, err
	}
	return s.list, nil
}

// siteParams is what every request of a Handler shares, worked out once:
// the script mapping and the parameters that never change, encoded.
type siteParams struct {
	root, index, split string
	// head is GATEWAY_INTERFACE, SERVER_SOFTWARE, REDIRECT_STATUS and
	// DOCUMENT_ROOT; env the extra parameters, sorted, and envIndex their
	// positions by name. Each list also encoded as pairs (headPairs,
	// envPairs).
	head, env           []Param
	headPairs, envPairs []byte
	envIndex            map[string]int
}

func newSiteParams(root, index, split string, env map[string]string) *siteParams {
	sp := &siteParams{root: strings.TrimSuffix(root, "/"), index: cmp.Or(index, "index.php"), split: cmp.Or(split, ".php")}
	sp.head = []Param{{"GATEWAY_INTERFACE", "CGI/1.1"}, {"SERVER_SOFTWARE", "shoal"},
		{"REDIRECT_STATUS", "200"}, {"DOCUMENT_ROOT", cmp.Or(sp.root, "/")}}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if k != "" && !strings.HasPrefix(k, "HTTP_") {
			sp.env = append(sp.env, Param{k, env[k]})
		}
	}
	if len(sp.env) > 0 {
		sp.envIndex = make(map[string]int, len(sp.env))
	}
	for i, p := range sp.env {
		sp.envIndex[p.Name] = i
		sp.envPairs = appendPair(sp.envPairs, p.Name, p.Value)
	}
	for _, p := range sp.head {
		sp.headPairs = appendPair(sp.headPairs, p.Name, p.Value)
	}
	return sp
}

// paramSink collects one request's parameters: as encoded pairs into enc
// (Handler's way, with no allocation of its own) or, when list is not
// nil, as a list (Params). An extra parameter of the site never replaces
// one the request set (shadowed marks those).
type paramSink struct {
	site     *siteParams
	enc      []byte
	list     []Param
	shadowed []bool
}

func (s *paramSink) add(k, v string) {
	if s.site.envIndex != nil {
		if i, ok := s.site.envIndex[k]; ok {
			s.shadowed[i] = true
		}
	}
	if s.list != nil {
		s.list = append(s.list, Param{k, v})
		return
	}
	s.enc = appendPair(s.enc, k, v)
}

// addJoined adds k = v1+v2 without making that string when encoding.
func (s *paramSink) addJoined(k, v1, v2 string) {
	if s.list != nil || s.site.envIndex != nil {
		s.add(k, v1+v2)
		return
	}
	s.enc = appendPair2(s.enc, k, v1, v2)
}

// build adds the parameters of a request for the URL path p, whose other
// parts m holds (from an *http.Request or a fast path's parse: the one
// way both entries build them), and returns the script's name and
// PATH_INFO. The order is fixed: the site's head, the script, the
// request's variables, then the site's extra parameters.
func (s *paramSink) build(p string, m *cgi.Meta, o *ParamsOptions) (name, info string, err error) {
	if !cleanPath(p) {
		return "", "", errUncleanPath
	}
	sp := s.site
	name, info = SplitPath(p, sp.index, sp.split)
	s.shadowed = append(s.shadowed[:0], make([]bool, len(sp.env))...)
	for _, hp := range sp.head {
		if i, ok := sp.envIndex[hp.Name]; ok {
			s.shadowed[i] = true
		}
	}
	if s.list != nil {
		s.list = append(s.list, sp.head...)
	} else {
		s.enc = append(s.enc, sp.headPairs...)
	}
	s.add("SCRIPT_NAME", name)
	s.addJoined("SCRIPT_FILENAME", sp.root, name)
	if info != "" {
		s.add("PATH_INFO", info)
		s.addJoined("PATH_TRANSLATED", sp.root, info)
	}
	if o.ContentLength >= 0 {
		s.add("CONTENT_LENGTH", strconv.FormatInt(o.ContentLength, 10))
	}
	if o.Session != "" {
		s.add("HTTP_SESSION", o.Session)
	}
	if o.User != "" {
		s.add("REMOTE_USER", o.User)
	}
	if o.AuthType != "" {
		s.add("AUTH_TYPE", o.AuthType)
	}
	if o.NodeName != "" {
		s.add("SHOAL_NODE", o.NodeName)
	}
	m.Vars(s.add)
	s.addEnv()
	return name, info, nil
}

// addEnv adds the site's extra parameters the request did not set: all
// of them at once, encoded already, in the usual case.
func (s *paramSink) addEnv() {
	sp := s.site
	if s.list == nil && !slices.Contains(s.shadowed, true) {
		s.enc = append(s.enc, sp.envPairs...)
		return
	}
	for i, p := range sp.env {
		if s.shadowed[i] {
			continue
		}
		if s.list != nil {
			s.list = append(s.list, p)
		} else {
			s.enc = appendPair(s.enc, p.Name, p.Value)
		}
	}
}

// cleanPath reports an absolute path without NUL and without "." or ".."
// segments.
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
