package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is one [[site.route]] as the config gives it, paths already
// resolved (Auth is an absolute file name).
type Spec struct {
	Path      string
	Methods   []string
	Scheme    string // "http" or "https": the route matches only that; "" any
	Headers   map[string]string
	Allow     []string
	Deny      []string
	Auth      string
	AuthRealm string
	Rate      string
	Burst     int
	Redirect  string
	Status    int
	Respond   int
	Rewrite   string
	TryFiles  []string
	Upstream  string
}

// Options is what Compile needs besides the specs. The zero value works:
// private limit and auth state, and no upstream name is known.
type Options struct {
	// Scope names the site on every node alike (its first host, say), so
	// that a route's rate buckets have the same identity cluster-wide.
	Scope string
	// HasUpstream reports whether an [[upstream]] of that name exists.
	HasUpstream func(name string) bool
	// Limits keeps the rate buckets; share one across reloads so a reload
	// does not hand every client a fresh burst.
	Limits *Limits
	// Guard caches good passwords and limits failed ones; share one across
	// reloads.
	Guard *Guard
}

// FieldError is one problem in one route's key.
type FieldError struct {
	Route int    // index of the route in the site's list
	Key   string // the route's key: "path", "redirect", ...
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("route.%d.%s: %v", e.Route, e.Key, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// ActionKind is what a route does with a request that it ends the walk of.
type ActionKind uint8

// The actions, in the order SPEC lists them.
const (
	NoAction ActionKind = iota // the site's own dispatch: CGI, page, static
	Redirect                   // Location: URL, Status
	Respond                    // Status with the site's error page
	Upstream                   // proxy to the upstream named Upstream
)

// rule is one compiled route.
type rule struct {
	index   int
	spec    string // the path key as written, for log lines
	path    pattern
	methods []string
	scheme  string
	headers []headerRule
	// headersFixed: no header value has a placeholder.
	headersFixed bool
	// touchesDate: a header rule sets or removes Date.
	touchesDate bool
	allow       []netip.Prefix
	deny        []netip.Prefix
	auth        *Auth
	limit       *Limit

	// action: at most one of redirect/rewrite/try_files/respond/upstream.
	kind      ActionKind
	status    int
	redirect  template
	rewrite   *template
	tries     []template
	tryStatus int // a last "=404" entry; 0 when the last entry is a path
	upstream  string
}

type headerRule struct {
	name   string // canonical
	remove bool
	value  template
}

// Table is a site's compiled routes. A nil *Table has no routes.
type Table struct {
	rules []rule
}

// Compile turns a site's route specs into a Table, or returns every
// problem found, each naming its route and key.
func Compile(specs []Spec, opt Options) (*Table, []error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if opt.Limits == nil {
		opt.Limits = NewLimits()
	}
	if opt.Guard == nil {
		opt.Guard = NewGuard()
	}
	t := &Table{rules: make([]rule, 0, len(specs))}
	var errs []error
	for i, s := range specs {
		r, es := compileRule(i, s, opt)
		errs = append(errs, es...)
		t.rules = append(t.rules, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

func compileRule(i int, s Spec, opt Options) (rule, []error) {
	var errs []error
	fail := func(key string, err error) { errs = append(errs, &FieldError{Route: i, Key: key, Err: err}) }
	r := rule{index: i, spec: s.Path}
	var err error
	if r.path, err = compilePattern(s.Path); err != nil {
		fail("path", err)
	}
	groups := r.path.groups()
	for _, m := range s.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
			fail("methods", fmt.Errorf("%q: a method is an upper-case token such as \"GET\"", m))
		}
		r.methods = append(r.methods, m)
	}
	switch s.Scheme {
	case "", "http", "https":
		r.scheme = s.Scheme
	default:
		fail("scheme", fmt.Errorf("%q: \"http\", \"https\" or \"\" (any)", s.Scheme))
	}
	r.headers = compileHeaders(s.Headers, groups, func(err error) { fail("headers", err) })
	r.headersFixed = true
	for _, h := range r.headers {
		r.headersFixed = r.headersFixed && h.value.plain
		r.touchesDate = r.touchesDate || h.name == "Date"
	}
	r.deny = compilePrefixes(s.Deny, func(err error) { fail("deny", err) })
	r.allow = compilePrefixes(s.Allow, func(err error) { fail("allow", err) })
	if s.Auth != "" {
		realm := s.AuthRealm
		if realm == "" {
			realm = "restricted"
		}
		if r.auth, err = LoadAuth(s.Auth, realm, opt.Guard); err != nil {
			fail("auth", err)
		}
	} else if s.AuthRealm != "" && s.AuthRealm != "restricted" {
		fail("auth_realm", errors.New("is set but auth (the htpasswd file) is not"))
	}
	var key string
	if r.limit, key, err = opt.Limits.limit(opt.Scope, i, s); err != nil {
		fail(key, err)
	}
	return r, append(errs, compileAction(&r, s, groups, opt)...)
}

func compileHeaders(hs map[string]string, groups int, fail func(error)) []headerRule {
	out := make([]headerRule, 0, len(hs))
	for name, v := range hs {
		h := headerRule{name: name}
		if strings.HasPrefix(name, "-") {
			h.remove, h.name = true, name[1:]
			if v != "" {
				fail(fmt.Errorf("%q removes the header: its value must be \"\"", name))
			}
		}
		if !validHeaderName(h.name) {
			fail(fmt.Errorf("%q is not a valid header name", name))
			continue
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			fail(fmt.Errorf("%q: a value may not hold a line break or NUL", name))
			continue
		}
		h.name = http.CanonicalHeaderKey(h.name)
		var err error
		if h.value, err = compileTemplate(v, groups); err != nil {
			fail(err)
			continue
		}
		out = append(out, h)
	}
	// Map order is random: sort so every node and every request applies a
	// route's headers alike (a set and a remove of one name, say).
	sortHeaders(out)
	return out
}

func sortHeaders(hs []headerRule) {
	for i := 1; i < len(hs); i++ {
		for j := i; j > 0 && hs[j].name < hs[j-1].name; j-- {
			hs[j], hs[j-1] = hs[j-1], hs[j]
		}
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func compilePrefixes(ss []string, fail func(error)) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			fail(fmt.Errorf("%q is neither a CIDR (\"10.0.0.0/8\") nor an IP", s))
			continue
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// compileAction checks that the route has at most one action and compiles
// it into r.
func compileAction(r *rule, s Spec, groups int, opt Options) []error {
	var errs []error
	fail := func(key string, err error) { errs = append(errs, &FieldError{Route: r.index, Key: key, Err: err}) }
	var set []string
	if s.Redirect != "" {
		set = append(set, "redirect")
	}
	if s.Respond != 0 {
		set = append(set, "respond")
	}
	if s.Rewrite != "" {
		set = append(set, "rewrite")
	}
	if len(s.TryFiles) > 0 {
		set = append(set, "try_files")
	}
	if s.Upstream != "" {
		set = append(set, "upstream")
	}
	if len(set) > 1 {
		fail(set[1], fmt.Errorf("a route has at most one action; this one also has %s", set[0]))
		return errs
	}
	if s.Status != 0 && s.Redirect == "" {
		fail("status", errors.New("is the redirect's status: set redirect too (respond takes its own status)"))
	}
	var err error
	switch {
	case s.Redirect != "":
		r.kind, r.status = Redirect, s.Status
		if r.status == 0 {
			r.status = http.StatusFound
		}
		switch r.status {
		case 301, 302, 303, 307, 308:
		default:
			fail("status", fmt.Errorf("%d: a redirect status is 301, 302, 303, 307 or 308", s.Status))
		}
		if r.redirect, err = compileTemplate(s.Redirect, groups); err != nil {
			fail("redirect", err)
		}
	case s.Respond != 0:
		r.kind, r.status = Respond, s.Respond
		if s.Respond < 200 || s.Respond > 599 {
			fail("respond", fmt.Errorf("%d: a status from 200 to 599", s.Respond))
		}
	case s.Rewrite != "":
		if !strings.HasPrefix(s.Rewrite, "/") && !strings.HasPrefix(s.Rewrite, "{") {
			fail("rewrite", fmt.Errorf("%q: a rewrite target is a path (\"/index.php?{query}\")", s.Rewrite))
		}
		t, err := compileTemplate(s.Rewrite, groups)
		if err != nil {
			fail("rewrite", err)
		}
		r.rewrite = &t
	case len(s.TryFiles) > 0:
		r.tries, r.tryStatus = compileTries(s.TryFiles, groups, func(err error) { fail("try_files", err) })
	case s.Upstream != "":
		r.kind, r.upstream = Upstream, s.Upstream
		if opt.HasUpstream == nil || !opt.HasUpstream(s.Upstream) {
			fail("upstream", fmt.Errorf("no [[upstream]] named %q", s.Upstream))
		}
	}
	return errs
}

func compileTries(entries []string, groups int, fail func(error)) ([]template, int) {
	var tries []template
	status := 0
	for i, e := range entries {
		if strings.HasPrefix(e, "=") {
			n, err := strconv.Atoi(e[1:])
			switch {
			case i != len(entries)-1:
				fail(fmt.Errorf("%q: a status may only be the last entry", e))
			case err != nil || n < 200 || n > 599:
				fail(fmt.Errorf("%q: the last entry may be \"=\" and a status from 200 to 599", e))
			default:
				status = n
			}
			continue
		}
		if !strings.HasPrefix(e, "/") && !strings.HasPrefix(e, "{") {
			fail(fmt.Errorf("%q: a candidate is a path such as \"{path}\", \"{path}/\" or \"/index.html\"", e))
			continue
		}
		t, err := compileTemplate(e, groups)
		if err != nil {
			fail(err)
			continue
		}
		tries = append(tries, t)
	}
	return tries, status
}
