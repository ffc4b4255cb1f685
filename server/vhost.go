package server

import (
	"net"
	"strings"
)

// vhosts picks a site by Host header: exact names first, then the longest
// matching wildcard ("*.example.com" matches any name ending in
// ".example.com", as in nginx), else the first site.
type vhosts struct {
	exact map[string]*site
	wild  []wildcard // longest suffix first
	def   *site
}

type wildcard struct {
	suffix string // ".example.com"
	site   *site
}

func newVhosts(sites []*site) *vhosts {
	v := &vhosts{exact: map[string]*site{}, def: sites[0]}
	for _, s := range sites {
		for _, h := range s.hosts {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				v.wild = append(v.wild, wildcard{suffix: suffix, site: s})
				continue
			}
			if _, dup := v.exact[h]; !dup {
				v.exact[h] = s
			}
		}
	}
	// Longest suffix first, so *.a.example.com wins over *.example.com.
	for i := 1; i < len(v.wild); i++ {
		for j := i; j > 0 && len(v.wild[j].suffix) > len(v.wild[j-1].suffix); j-- {
			v.wild[j], v.wild[j-1] = v.wild[j-1], v.wild[j]
		}
	}
	return v
}

// match returns the site for a Host header value (any case, with or
// without port, with or without a trailing dot).
func (v *vhosts) match(host string) *site {
	if len(v.exact) == 0 && len(v.wild) == 0 {
		return v.def
	}
	name := hostName(host)
	if s, ok := v.exact[name]; ok {
		return s
	}
	for _, w := range v.wild {
		if strings.HasSuffix(name, w.suffix) && len(name) > len(w.suffix) {
			return w.site
		}
	}
	return v.def
}

// hostName lowercases a Host header and drops the port and trailing dot.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
