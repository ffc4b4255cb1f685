package route

import (
	"fmt"
	"strings"
)

// Vars are the values a request gives the placeholders.
type Vars struct {
	Path   string // {path}: the clean path, after any rewrite
	Query  string // {query}: the raw query, after any rewrite, without "?"
	URI    string // {uri}: path and query as the client sent them
	Host   string // {host}: the request's host, without a port
	Scheme string // {scheme}: "http" or "https"
	Remote string // {remote}: the client IP (after trusted_proxies)
}

// placeholder names a value a template segment takes from the request.
type placeholder uint8

const (
	literal placeholder = iota
	phPath
	phQuery
	phURI
	phHost
	phScheme
	phRemote
	phGroup // {1}..{9}: the group is in segment.group
)

type segment struct {
	kind  placeholder
	text  string // the literal text
	group int
}

// template is a value with placeholders, split once at load so that
// expanding it only appends.
type template struct {
	segs []segment
	// plain is set when the value has no placeholder at all.
	plain bool
	raw   string
}

// compileTemplate splits s into literals and placeholders; groups is how
// many regexp groups the route's pattern has ({N} beyond it is an error).
func compileTemplate(s string, groups int) (template, error) {
	t := template{raw: s}
	for rest := s; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			t.segs = append(t.segs, segment{text: rest})
			break
		}
		if open > 0 {
			t.segs = append(t.segs, segment{text: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return template{}, fmt.Errorf("%q: unclosed \"{\"", s)
		}
		name := rest[open+1 : open+end]
		seg, err := placeholderSegment(name, groups)
		if err != nil {
			return template{}, fmt.Errorf("%q: %w", s, err)
		}
		t.segs = append(t.segs, seg)
		rest = rest[open+end+1:]
	}
	t.plain = len(t.segs) <= 1 && (len(t.segs) == 0 || t.segs[0].kind == literal)
	return t, nil
}

func placeholderSegment(name string, groups int) (segment, error) {
	switch name {
	case "path":
		return segment{kind: phPath}, nil
	case "query":
		return segment{kind: phQuery}, nil
	case "uri":
		return segment{kind: phURI}, nil
	case "host":
		return segment{kind: phHost}, nil
	case "scheme":
		return segment{kind: phScheme}, nil
	case "remote":
		return segment{kind: phRemote}, nil
	}
	if len(name) == 1 && name[0] >= '1' && name[0] <= '9' {
		n := int(name[0] - '0')
		if n > groups {
			if groups == 0 {
				return segment{}, fmt.Errorf("placeholder {%s} needs a \"~regexp\" path with groups", name)
			}
			return segment{}, fmt.Errorf("placeholder {%s}: the path's regexp has only %d groups", name, groups)
		}
		return segment{kind: phGroup, group: n}, nil
	}
	return segment{}, fmt.Errorf("unknown placeholder {%s} (known: {path} {query} {uri} {host} {scheme} {remote} {1}..{9})", name)
}

// expand writes the template with the request's values.
func (t *template) expand(v *Vars, groups []string) string {
	if t.plain {
		return t.raw
	}
	var b strings.Builder
	for _, s := range t.segs {
		switch s.kind {
		case literal:
			b.WriteString(s.text)
		case phPath:
			b.WriteString(v.Path)
		case phQuery:
			b.WriteString(v.Query)
		case phURI:
			b.WriteString(v.URI)
		case phHost:
			b.WriteString(v.Host)
		case phScheme:
			b.WriteString(v.Scheme)
		case phRemote:
			b.WriteString(v.Remote)
		case phGroup:
			if s.group < len(groups) {
				b.WriteString(groups[s.group])
			}
		}
	}
	return b.String()
}
