package config

import (
	"strconv"
	"strings"
)

// Pos is a place in a config file, 1-based.
type Pos struct {
	Line, Col int
}

// keyIndex records where each key of a TOML document stands, because
// BurntSushi/toml reports unknown keys without a position. Keys inside arrays
// of tables are recorded twice: with the element index ("site.1.root") and
// without it ("site.root", first occurrence), so both validation (which knows
// the index) and toml's Undecoded keys (which do not) can be placed.
type keyIndex struct {
	pos map[string]Pos
}

func (ki keyIndex) lookup(path string) (Pos, bool) {
	p, ok := ki.pos[path]
	return p, ok
}

// indexKeys scans TOML source. It only needs to be right for documents that
// toml already parsed without a syntax error.
func indexKeys(src string) keyIndex {
	s := &keyScanner{src: src, line: 1, col: 1, ki: keyIndex{pos: map[string]Pos{}}, arrays: map[string]int{}}
	s.scan()
	return s.ki
}

type keyScanner struct {
	src       string
	i         int
	line, col int
	ki        keyIndex
	table     []string // current table path, with array indices
	plain     []string // the same without indices
	arrays    map[string]int
}

func (s *keyScanner) peek() byte {
	if s.i >= len(s.src) {
		return 0
	}
	return s.src[s.i]
}

func (s *keyScanner) next() byte {
	c := s.peek()
	s.i++
	if c == '\n' {
		s.line++
		s.col = 1
	} else {
		s.col++
	}
	return c
}

func (s *keyScanner) skipSpace(newlines bool) {
	for s.i < len(s.src) {
		c := s.peek()
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			s.next()
		case c == '\n' && newlines:
			s.next()
		case c == '#':
			for s.i < len(s.src) && s.peek() != '\n' {
				s.next()
			}
		default:
			return
		}
	}
}

func (s *keyScanner) scan() {
	for {
		s.skipSpace(true)
		if s.i >= len(s.src) {
			return
		}
		if s.peek() == '[' {
			s.header()
			continue
		}
		s.keyValue(s.table, s.plain)
	}
}

func (s *keyScanner) header() {
	s.next()
	array := s.peek() == '['
	if array {
		s.next()
	}
	parts := s.dottedKey()
	for s.i < len(s.src) && s.peek() != '\n' {
		s.next()
	}
	// Each element of a parent array of tables has its own numbering.
	indexed := make([]string, 0, len(parts)+2)
	plain := make([]string, 0, len(parts))
	for j, p := range parts {
		plain = append(plain, p)
		indexed = append(indexed, p)
		if j < len(parts)-1 {
			if n, ok := s.arrays[strings.Join(indexed, ".")]; ok {
				indexed = append(indexed, strconv.Itoa(n-1))
			}
		}
	}
	key := strings.Join(indexed, ".")
	if array {
		n := s.arrays[key]
		s.arrays[key] = n + 1
		s.record(indexed, plain)
		indexed = append(indexed, strconv.Itoa(n))
		s.record(indexed, plain) // the element itself: "site.1"
	} else {
		s.record(indexed, plain)
	}
	s.table, s.plain = indexed, plain
}

func (s *keyScanner) record(indexed, plain []string) {
	p := Pos{Line: s.line, Col: 1}
	for _, k := range []string{strings.Join(indexed, "."), strings.Join(plain, ".")} {
		if _, ok := s.ki.pos[k]; !ok {
			s.ki.pos[k] = p
		}
	}
}

// keyValue reads `key = value` and records the key (and the keys of an
// inline table value) under the given table path.
func (s *keyScanner) keyValue(table, plain []string) {
	start := Pos{Line: s.line, Col: s.col}
	parts := s.dottedKey()
	if len(parts) == 0 {
		s.next() // not a key: step over it so the scan always advances
		return
	}
	full := append(append([]string{}, table...), parts...)
	fullPlain := append(append([]string{}, plain...), parts...)
	for _, k := range []string{strings.Join(full, "."), strings.Join(fullPlain, ".")} {
		if _, ok := s.ki.pos[k]; !ok {
			s.ki.pos[k] = start
		}
	}
	s.skipSpace(false)
	if s.peek() == '=' {
		s.next()
	}
	s.skipSpace(false)
	s.value(full, fullPlain)
}

func (s *keyScanner) dottedKey() []string {
	var parts []string
	for {
		s.skipSpace(false)
		var part string
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			part = s.quoted()
		case isBareKeyChar(c):
			st := s.i
			for s.i < len(s.src) && isBareKeyChar(s.peek()) {
				s.next()
			}
			part = s.src[st:s.i]
		default:
			return parts
		}
		parts = append(parts, part)
		s.skipSpace(false)
		if s.peek() != '.' {
			return parts
		}
		s.next()
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoted reads a basic or literal string (single- or multi-line) and returns
// its raw contents; escapes are kept as written, which is enough for keys.
func (s *keyScanner) quoted() string {
	q := s.next()
	delim := string(q)
	if strings.HasPrefix(s.src[s.i:], string([]byte{q, q})) {
		s.next()
		s.next()
		delim = strings.Repeat(string(q), 3)
	}
	st := s.i
	for s.i < len(s.src) {
		if q == '"' && s.peek() == '\\' {
			s.next()
			s.next()
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			out := s.src[st:s.i]
			for range delim {
				s.next()
			}
			return out
		}
		if len(delim) == 1 && s.peek() == '\n' {
			return s.src[st:s.i]
		}
		s.next()
	}
	return s.src[st:]
}

func (s *keyScanner) value(path, plain []string) {
	switch c := s.peek(); c {
	case '"', '\'':
		s.quoted()
	case '[':
		s.next()
		for s.i < len(s.src) {
			s.skipSpace(true)
			if s.peek() == ']' {
				s.next()
				return
			}
			if s.peek() == ',' {
				s.next()
				continue
			}
			before := s.i
			s.value(path, plain)
			if s.i == before {
				s.next()
			}
		}
	case '{':
		s.next()
		for s.i < len(s.src) {
			s.skipSpace(false)
			switch s.peek() {
			case '}':
				s.next()
				return
			case ',':
				s.next()
			case '\n', 0:
				return
			default:
				s.keyValue(path, plain)
			}
		}
	default:
		for s.i < len(s.src) {
			c := s.peek()
			if c == ',' || c == ']' || c == '}' || c == '\n' || c == '#' {
				return
			}
			s.next()
		}
	}
}
