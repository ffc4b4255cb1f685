package config

import (
	"fmt"
	"io"
	"os"
)

// Limits checked before a config reaches the TOML decoder, which is
// quadratic on deep nesting (16 KB of nested tables took 8.6 s and
// 833 MB): a real shoal config is a few KB deep at most five levels
// ([[site.cgi]] interpreters = {...}).
const (
	maxConfigBytes = 1 << 20
	maxConfigDepth = 32
)

// readConfigFile reads at most maxConfigBytes of path, refusing a larger
// file without reading it whole.
func readConfigFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if len(src) > maxConfigBytes {
		return "", Errors{{File: path, Msg: fmt.Sprintf("config file is larger than %d KiB: refused before decoding", maxConfigBytes>>10)}}
	}
	return string(src), nil
}

// checkNesting refuses src when tables, dotted keys, inline tables and
// arrays nest deeper than maxConfigDepth, placing the error where the
// limit is crossed. It scans without decoding: strings and comments are
// skipped, dots count only in keys.
func checkNesting(path, src string) error {
	s := nestScan{src: src, line: 1, col: 1, atLineStart: true, inKey: true}
	if pos, deep := s.scan(); deep {
		return Errors{{File: path, Pos: pos,
			Msg: fmt.Sprintf("tables, keys and arrays nest deeper than %d levels: refused before decoding", maxConfigDepth)}}
	}
	return nil
}

// nestScan walks TOML source tracking how deep the current position is.
type nestScan struct {
	src         string
	i           int
	line, col   int
	atLineStart bool
	// table is the depth of the current [table] header; depth that of the
	// current position; open holds, per open [ or {, the depth it began at
	// and its bracket.
	table, depth int
	open         []opened
	inKey        bool // reading a key (dots nest) rather than a value
}

type opened struct {
	depth   int
	bracket byte
}

func (s *nestScan) advance() {
	if s.src[s.i] == '\n' {
		s.line++
		s.col = 1
	} else {
		s.col++
	}
	s.i++
}

// scan returns the position where the depth first passes the limit.
func (s *nestScan) scan() (Pos, bool) {
	for s.i < len(s.src) {
		c := s.src[s.i]
		pos := Pos{Line: s.line, Col: s.col}
		switch {
		case c == '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.advance()
			}
			continue
		case c == '"' || c == '\'':
			s.skipString()
			continue
		case c == '\n':
			if len(s.open) == 0 {
				s.depth, s.inKey, s.atLineStart = s.table, true, true
			}
		case c == ' ' || c == '\t' || c == '\r':
		case c == '[' && s.atLineStart && len(s.open) == 0:
			s.header()
			if s.depth > maxConfigDepth {
				return pos, true
			}
			continue
		case s.inKey && c == '.':
			s.depth++
		case s.inKey && c == '=':
			s.inKey = false
		case !s.inKey && (c == '[' || c == '{'):
			s.open = append(s.open, opened{s.depth, c})
			s.depth++
			s.inKey = c == '{'
		case c == ',' && len(s.open) > 0:
			top := s.open[len(s.open)-1]
			s.depth, s.inKey = top.depth+1, top.bracket == '{'
		case (c == ']' || c == '}') && len(s.open) > 0:
			s.depth = s.open[len(s.open)-1].depth
			s.open = s.open[:len(s.open)-1]
			s.inKey = false
		default:
			if s.inKey && s.atLineStart && len(s.open) == 0 {
				s.depth = s.table + 1 // a key's first part
			}
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			s.atLineStart = false
		}
		if s.depth > maxConfigDepth {
			return pos, true
		}
		s.advance()
	}
	return Pos{}, false
}

// header reads a [table] or [[array]] header: one level per dotted part,
// one more for an array of tables.
func (s *nestScan) header() {
	s.advance()
	depth := 1
	if s.i < len(s.src) && s.src[s.i] == '[' {
		depth++
		s.advance()
	}
	for s.i < len(s.src) && s.src[s.i] != '\n' && s.src[s.i] != '#' {
		switch s.src[s.i] {
		case '"', '\'':
			s.skipString()
			continue
		case '.':
			depth++
		}
		s.advance()
	}
	s.table, s.depth, s.inKey, s.atLineStart = depth, depth, true, false
}

// skipString steps over a basic or literal string, single- or multi-line.
func (s *nestScan) skipString() {
	q := s.src[s.i]
	delim := string(q)
	if len(s.src)-s.i >= 3 && s.src[s.i+1] == q && s.src[s.i+2] == q {
		delim = string([]byte{q, q, q})
	}
	for range delim {
		s.advance()
	}
	s.atLineStart = false
	for s.i < len(s.src) {
		if q == '"' && s.src[s.i] == '\\' && s.i+1 < len(s.src) {
			s.advance()
			s.advance()
			continue
		}
		if len(s.src)-s.i >= len(delim) && s.src[s.i:s.i+len(delim)] == delim {
			for range delim {
				s.advance()
			}
			return
		}
		if len(delim) == 1 && s.src[s.i] == '\n' {
			return // unterminated: the decoder reports it
		}
		s.advance()
	}
}
