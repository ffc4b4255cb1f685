package server

import "testing"

func TestVhostMatch(t *testing.T) {
	mk := func(label string, hosts ...string) *site { return &site{label: label, hosts: hosts} }
	sites := []*site{
		mk("first", "first.test"),
		mk("exact", "example.com", "www.example.com"),
		mk("wild", "*.example.com"),
		mk("deeper", "*.api.example.com"),
		mk("dotted", "dotted.test."),
		mk("upper", "UPPER.Test"),
		mk("v6", "::1"),
	}
	v := newVhosts(sites)
	cases := []struct {
		host, want string
	}{
		{"example.com", "exact"},
		{"www.example.com", "exact"},
		{"EXAMPLE.com", "exact"},
		{"Example.Com:8080", "exact"},
		{"example.com.", "exact"},
		{"example.com.:443", "exact"},
		{"a.example.com", "wild"},
		{"A.Example.COM", "wild"},
		{"a.b.example.com", "wild"},
		{"a.example.com:8443", "wild"},
		{"a.example.com.", "wild"},
		{"x.api.example.com", "deeper"},
		{"y.x.api.example.com", "deeper"},
		{"api.example.com", "wild"},
		{"notexample.com", "first"},
		{"example.com.evil", "first"},
		{".example.com", "first"},
		{"dotted.test", "dotted"},
		{"dotted.test.", "dotted"},
		{"upper.test", "upper"},
		{"first.test", "first"},
		{"unknown.test", "first"},
		{"", "first"},
		{"127.0.0.1:8080", "first"},
		{"[::1]:8080", "v6"},
	}
	for _, tc := range cases {
		if got := v.match(tc.host); got.label != tc.want {
			t.Errorf("match(%q) = %s, want %s", tc.host, got.label, tc.want)
		}
	}
}

// TestVhostWildcardOrder: the longest wildcard wins whatever the order of
// the sites in the config.
func TestVhostWildcardOrder(t *testing.T) {
	orders := [][]string{
		{"*.example.com", "*.a.example.com", "*.b.a.example.com"},
		{"*.b.a.example.com", "*.a.example.com", "*.example.com"},
		{"*.a.example.com", "*.b.a.example.com", "*.example.com"},
	}
	for _, order := range orders {
		sites := []*site{{label: "default", hosts: []string{"default.test"}}}
		for _, h := range order {
			sites = append(sites, &site{label: h, hosts: []string{h}})
		}
		v := newVhosts(sites)
		for host, want := range map[string]string{
			"x.example.com":     "*.example.com",
			"x.a.example.com":   "*.a.example.com",
			"x.b.a.example.com": "*.b.a.example.com",
			"b.a.example.com":   "*.a.example.com",
			"example.com":       "default",
		} {
			if got := v.match(host); got.label != want {
				t.Errorf("order %v: match(%q) = %s, want %s", order, host, got.label, want)
			}
		}
	}
}

// TestVhostNoHosts: a site without hosts takes every name; with several,
// the first one declared is the default, and an exact name declared twice
// goes to the first site that declared it.
func TestVhostNoHosts(t *testing.T) {
	v := newVhosts([]*site{{label: "any"}})
	for _, h := range []string{"a.test", "", "x:1"} {
		if got := v.match(h); got.label != "any" {
			t.Errorf("match(%q) = %s", h, got.label)
		}
	}
	v = newVhosts([]*site{
		{label: "one", hosts: []string{"dup.test"}},
		{label: "two", hosts: []string{"dup.test", "two.test"}},
	})
	if got := v.match("dup.test"); got.label != "one" {
		t.Errorf("dup.test -> %s, want one", got.label)
	}
	if got := v.match("two.test"); got.label != "two" {
		t.Errorf("two.test -> %s, want two", got.label)
	}
}
