package fastcgi

import (
	"crypto/tls"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestParamsEncodedAsListed: the params a Handler encodes into its buffer
// are Params' list, pair for pair and in order, and a site's extra
// parameter never replaces one the request set.
func TestParamsEncodedAsListed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		target string
		tls    bool
		want   map[string]string // some of the values, by name
	}{
		{"plain", nil, "/a.php", false, map[string]string{"SCRIPT_FILENAME": "/srv/www/a.php", "DOCUMENT_ROOT": "/srv/www"}},
		{"path info and env", map[string]string{"FOO": "bar", "HTTP_X": "no", "": "empty"}, "/a.php/b/c?q=1", false,
			map[string]string{"PATH_INFO": "/b/c", "PATH_TRANSLATED": "/srv/www/b/c", "FOO": "bar", "QUERY_STRING": "q=1"}},
		{"env shadowed", map[string]string{"HTTPS": "off", "PATH_INFO": "/env", "DOCUMENT_ROOT": "/env", "Z": "z"}, "/a.php/b", true,
			map[string]string{"HTTPS": "on", "PATH_INFO": "/b", "DOCUMENT_ROOT": "/srv/www", "Z": "z"}},
		{"env where the request sets nothing", map[string]string{"HTTPS": "off", "PATH_INFO": "/env"}, "/a.php", false,
			map[string]string{"HTTPS": "off", "PATH_INFO": "/env"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://example.com"+tc.target, nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			r.Header.Set("X-Custom", "v")
			r.Header.Set("Proxy", "http://evil")
			h := &Handler{Root: "/srv/www/", Env: tc.env, NodeName: "n1"}
			list, err := Params(r, ParamsOptions{Root: h.Root, Env: h.Env, NodeName: h.NodeName, ContentLength: -1})
			if err != nil {
				t.Fatal(err)
			}
			x := h.exchange(r)
			defer h.done(x)
			if err := x.params(r, -1); err != nil {
				t.Fatal(err)
			}
			var got []Param
			if err := parsePairs(x.pairs.enc[requestRoom:], func(n, v []byte) { got = append(got, Param{string(n), string(v)}) }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, list) {
				t.Errorf("encoded %v\nlisted  %v", got, list)
			}
			seen := map[string]string{}
			for _, p := range list {
				if _, dup := seen[p.Name]; dup {
					t.Errorf("%s twice", p.Name)
				}
				seen[p.Name] = p.Value
			}
			for k, v := range tc.want {
				if seen[k] != v {
					t.Errorf("%s = %q, want %q", k, seen[k], v)
				}
			}
			for _, k := range []string{"HTTP_X", "HTTP_PROXY", ""} {
				if _, ok := seen[k]; ok {
					t.Errorf("%q passed", k)
				}
			}
		})
	}
}
