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
	p := r.URL.Path
	if !cleanPath(p) {
		return nil, errUncleanPath
	}
	name, info := SplitPath(p, cmp.Or(o.Index, "index.php"), cmp.Or(o.Split, ".php"))
	root := strings.TrimSuffix(o.Root, "/")
	params := make([]Param, 0, 32+len(r.Header)+len(o.Env))
	seen := make(map[string]bool, cap(params))
	add := func(k, v string) {
		seen[k] = true
		params = append(params, Param{k, v})
	}
	add("GATEWAY_INTERFACE", "CGI/1.1")
	add("SERVER_SOFTWARE", "shoal")
	add("REDIRECT_STATUS", "200")
	add("DOCUMENT_ROOT", cmp.Or(root, "/"))
	add("SCRIPT_NAME", name)
	add("SCRIPT_FILENAME", root+name)
	if info != "" {
		add("PATH_INFO", info)
		add("PATH_TRANSLATED", root+info)
	}
	if o.ContentLength >= 0 {
		add("CONTENT_LENGTH", strconv.FormatInt(o.ContentLength, 10))
	}
	if o.Session != "" {
		add("HTTP_SESSION", o.Session)
	}
	if o.User != "" {
		add("REMOTE_USER", o.User)
	}
	if o.AuthType != "" {
		add("AUTH_TYPE", o.AuthType)
	}
	if o.NodeName != "" {
		add("SHOAL_NODE", o.NodeName)
	}
	cgi.RequestVars(r, add)
	for _, k := range slices.Sorted(maps.Keys(o.Env)) {
		if k != "" && !seen[k] && !strings.HasPrefix(k, "HTTP_") {
			add(k, o.Env[k])
		}
	}
	return params, nil
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
