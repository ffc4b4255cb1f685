package route

import (
	"fmt"
	"regexp"
	"strings"
)

// patternKind says how a route's path is compared with a request's.
type patternKind uint8

const (
	exact  patternKind = iota // "/a": the path itself
	prefix                    // "/a/*": "/a", "/a/" and everything below
	suffix                    // "*.css": any path ending so
	regex                     // "~re": a Go regexp, groups become {1}..{9}
)

// pattern is a compiled route path.
type pattern struct {
	kind patternKind
	// text is the path for exact, the prefix without "/*" for prefix and
	// the ending for suffix.
	text string
	re   *regexp.Regexp
	// lead is what every path a "^..." regexp matches starts with: a miss
	// on it skips the regexp engine.
	lead string
}

// compilePattern parses a route's path key.
func compilePattern(s string) (pattern, error) {
	switch {
	case s == "":
		return pattern{}, fmt.Errorf("is required (\"/exact\", \"/prefix/*\", \"*.ext\" or \"~regexp\")")
	case strings.HasPrefix(s, "~"):
		re, err := regexp.Compile(s[1:])
		if err != nil {
			return pattern{}, fmt.Errorf("bad regexp: %w", err)
		}
		if re.NumSubexp() > 9 {
			return pattern{}, fmt.Errorf("regexp has %d groups; at most 9 ({1}..{9})", re.NumSubexp())
		}
		pt := pattern{kind: regex, re: re}
		if strings.HasPrefix(s, "~^") && !strings.Contains(s, "|") {
			pt.lead, _ = re.LiteralPrefix()
		}
		return pt, nil
	case strings.HasPrefix(s, "*"):
		if len(s) < 2 || strings.ContainsAny(s[1:], "*/") {
			return pattern{}, fmt.Errorf("%q: a suffix pattern is \"*\" and an ending such as \".css\"", s)
		}
		return pattern{kind: suffix, text: s[1:]}, nil
	case !strings.HasPrefix(s, "/"):
		return pattern{}, fmt.Errorf("%q: must start with \"/\", \"*\" or \"~\"", s)
	case strings.HasSuffix(s, "/*"):
		p := strings.TrimSuffix(s, "/*")
		if strings.Contains(p, "*") {
			return pattern{}, fmt.Errorf("%q: \"*\" may only end a prefix (\"/a/*\") or start a suffix (\"*.css\")", s)
		}
		return pattern{kind: prefix, text: p}, nil
	case strings.Contains(s, "*"):
		return pattern{}, fmt.Errorf("%q: \"*\" may only end a prefix (\"/a/*\") or start a suffix (\"*.css\")", s)
	}
	return pattern{kind: exact, text: s}, nil
}

// match reports whether the clean path p matches, and for a regexp the
// submatches (index 0 is the whole match), which templates read as {1}..
func (pt *pattern) match(p string) (bool, []string) {
	switch pt.kind {
	case exact:
		return p == pt.text, nil
	case prefix:
		// "/a/*" takes "/a" itself and what lies below "/a/", not "/ab".
		if !strings.HasPrefix(p, pt.text) {
			return false, nil
		}
		rest := p[len(pt.text):]
		return rest == "" || rest[0] == '/', nil
	case suffix:
		return strings.HasSuffix(p, pt.text), nil
	}
	// The cheaper tests first: most paths miss, and a miss needs no groups.
	if !strings.HasPrefix(p, pt.lead) || !pt.re.MatchString(p) {
		return false, nil
	}
	if pt.re.NumSubexp() == 0 {
		return true, nil
	}
	return true, pt.re.FindStringSubmatch(p)
}

// groups is how many {N} placeholders the pattern can fill.
func (pt *pattern) groups() int {
	if pt.kind != regex {
		return 0
	}
	return pt.re.NumSubexp()
}
