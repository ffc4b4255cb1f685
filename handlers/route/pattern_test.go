package route

import (
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		path    string
		want    bool
	}{
		{"/a", "/a", true},
		{"/a", "/a/", false},
		{"/a", "/ab", false},
		{"/a/*", "/a", true},
		{"/a/*", "/a/", true},
		{"/a/*", "/a/b/c", true},
		{"/a/*", "/ab", false},
		{"/a/*", "/", false},
		{"/*", "/anything", true},
		{"/*", "/", true},
		{"*.css", "/x/site.css", true},
		{"*.css", "/x/site.cssx", false},
		{"~^/u/([0-9]+)$", "/u/42", true},
		{"~^/u/([0-9]+)$", "/u/x", false},
	}
	for _, tt := range tests {
		p, err := compilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tt.pattern, err)
		}
		if got, _ := p.match(tt.path); got != tt.want {
			t.Errorf("%q on %q = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"", "is required"},
		{"a/b", "must start with"},
		{"/a*b", "may only end a prefix"},
		{"/a/*/b", "may only end a prefix"},
		{"*", "a suffix pattern"},
		{"*.c/ss", "a suffix pattern"},
		{"~(", "bad regexp"},
		{"~(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "at most 9"},
	}
	for _, tt := range tests {
		_, err := compilePattern(tt.pattern)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.pattern, err, tt.want)
		}
	}
}

func TestTemplate(t *testing.T) {
	v := &Vars{Path: "/p", Query: "a=1", URI: "/orig?a=1", Host: "example.com", Scheme: "https", Remote: "192.0.2.1"}
	groups := []string{"/u/42", "42"}
	tests := []struct{ tmpl, want string }{
		{"plain", "plain"},
		{"", ""},
		{"{scheme}://{host}{uri}", "https://example.com/orig?a=1"},
		{"{path}?{query}", "/p?a=1"},
		{"/user?id={1}&ip={remote}", "/user?id=42&ip=192.0.2.1"},
	}
	for _, tt := range tests {
		tp, err := compileTemplate(tt.tmpl, 1)
		if err != nil {
			t.Fatalf("%q: %v", tt.tmpl, err)
		}
		if got := tp.expand(v, groups); got != tt.want {
			t.Errorf("%q = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
	for tmpl, want := range map[string]string{
		"{nope}":   "unknown placeholder {nope}",
		"{path":    "unclosed",
		"{2}":      "only 1 groups",
		"{10}":     "unknown placeholder",
		"x{path}{": "unclosed",
	} {
		if _, err := compileTemplate(tmpl, 1); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", tmpl, err, want)
		}
	}
	if _, err := compileTemplate("{1}", 0); err == nil || !strings.Contains(err.Error(), "~regexp") {
		t.Errorf("{1} without a regexp: error %v", err)
	}
}
