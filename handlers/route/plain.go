package route

// Plain is the fast paths' question: do the routes matching method, scheme
// and path (p clean, no query) do nothing but set fixed response headers?
// Then a response prepared once per file can answer the request, with the
// header changes of the routes in key (bit i: route i) applied once per
// key (FixedHeaders). ok is false when a matching route would do more
// (an action, allow/deny, auth, a rate, a header with a placeholder) or
// is past the 64th: the request takes the full chain. A nil Table is plain
// with key 0.
func (t *Table) Plain(method, scheme, p string) (key uint64, ok bool) {
	if t == nil {
		return 0, true
	}
	for i := range t.rules {
		r := &t.rules[i]
		if m, _ := r.matches(method, scheme, p); !m {
			continue
		}
		if !r.onlyFixedHeaders() {
			return 0, false
		}
		key |= 1 << r.index
	}
	return key, true
}

// onlyFixedHeaders: the route changes nothing but response headers, with
// values known at load, none of them Date (a fast path writes its own),
// and fits in a Plain key.
func (r *rule) onlyFixedHeaders() bool {
	return r.index < 64 && r.headersFixed && !r.touchesDate && r.kind == NoAction && r.rewrite == nil &&
		r.tries == nil && r.tryStatus == 0 && len(r.allow) == 0 && len(r.deny) == 0 &&
		r.auth == nil && r.limit == nil
}

// FixedHeaders returns the header changes of the routes in key, in file
// order, as Resolve would give them.
func (t *Table) FixedHeaders(key uint64) []Header {
	var out []Header
	for i := range t.rules {
		r := &t.rules[i]
		if r.index >= 64 || key&(1<<r.index) == 0 {
			continue
		}
		for _, h := range r.headers {
			out = append(out, Header{Name: h.name, Remove: h.remove, Value: h.value.raw})
		}
	}
	return out
}

// ApplyHeaders makes the changes in hs to h; a removed header is set to
// nil rather than deleted, so that net/http adds no Date or sniffed
// Content-Type in its place.
func ApplyHeaders(hs []Header, h map[string][]string) {
	for _, x := range hs {
		if x.Remove {
			h[x.Name] = nil
		} else {
			h[x.Name] = []string{x.Value}
		}
	}
}

// PlainUpstream reports the upstream a request goes to when the first
// route it matches is an upstream action that does nothing else (no
// header rule, allow/deny, auth or rate), so that a fast path may relay
// it as it is; "" when any route it matches asks for more.
func (t *Table) PlainUpstream(method, scheme, p string) string {
	if t == nil {
		return ""
	}
	for i := range t.rules {
		r := &t.rules[i]
		if m, _ := r.matches(method, scheme, p); !m {
			continue
		}
		if r.kind != Upstream || len(r.headers) > 0 || len(r.allow) > 0 || len(r.deny) > 0 ||
			r.auth != nil || r.limit != nil {
			return ""
		}
		return r.upstream
	}
	return ""
}
