package config_test

import (
	"strings"
	"testing"

	"shoal/server/config"
)

// TestConfigHostileRefused: configs built to make the TOML decoder
// quadratic (deep nesting) or simply huge are refused before decoding,
// with an error naming the file. Without the guard the nesting cases take
// seconds and hundreds of MB, and end in another error or none.
func TestConfigHostileRefused(t *testing.T) {
	const n = 4000
	cases := []struct {
		name, src string
		want      string
		line      int
	}{
		{"nested table headers", "[" + strings.Repeat("a.", n) + "a]\n", "nest deeper than 32", 1},
		{"nested inline tables", "[server]\nx = " + strings.Repeat("{a=", n) + "1" + strings.Repeat("}", n) + "\n", "nest deeper than 32", 2},
		{"nested arrays", "x = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n", "nest deeper than 32", 1},
		{"dotted key", "[log]\n" + strings.Repeat("a.", n) + "a = 1\n", "nest deeper than 32", 2},
		{"array of nested tables", "[[" + strings.Repeat("s.", n) + "s]]\n", "nest deeper than 32", 1},
		{"mixed", "[a.b.c]\nd.e.f = [" + strings.Repeat("{g.h = [", n/4) + "]", "nest deeper than 32", 2},
		{"nested tables one per line", nestedHeaders(n), "nest deeper than 32", 33},
		{"larger than 1 MiB", strings.Repeat("# padding padding padding padding\n", 40000), "larger than 1024 KiB", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			cfg, err := config.Load(path)
			if cfg != nil || err == nil {
				t.Fatalf("Load = %v, %v; want refused", cfg != nil, err)
			}
			errs := configErrors(t, err)
			if len(errs) != 1 || !strings.Contains(errs[0].Msg, tc.want) || !strings.Contains(errs[0].Msg, "refused before decoding") {
				t.Fatalf("error %v; want one saying %q, refused before decoding", err, tc.want)
			}
			if !strings.HasPrefix(errs[0].Error(), path+":") {
				t.Errorf("error %q does not name the file", errs[0].Error())
			}
			if errs[0].Pos.Line != tc.line {
				t.Errorf("error at line %d, want %d", errs[0].Pos.Line, tc.line)
			}
		})
	}
}

// nestedHeaders is [a] [a.a] [a.a.a] ... n levels, a table per line.
func nestedHeaders(n int) string {
	var b strings.Builder
	key := "a"
	for range n {
		b.WriteString("[" + key + "]\n")
		key += ".a"
		if b.Len() > 64<<10 {
			break
		}
	}
	return b.String()
}

// TestConfigNestingAccepted: what looks deep but is not (dots in values
// and strings, brackets in strings and comments, many shallow tables) and
// nesting up to the limit are decoded as usual.
func TestConfigNestingAccepted(t *testing.T) {
	cases := []struct{ name, src string }{
		{"real config", "[server]\nhttp = \":8080\"\n[[site]]\nroot = \"www\"\nheaders = {X-A = \"a.b.c.d\"}\n[[site.cgi]]\next = [\".php\"]\ninterpreters = {\".php\" = \"php-cgi\"}\n"},
		{"dots and brackets in strings", "[log]\naccess = \"" + strings.Repeat("[{.", 100) + "\"\n# " + strings.Repeat("[", 100) + "\n[server]\nname = '''" + strings.Repeat("{a.", 50) + "'''\n"},
		{"quoted dotted header", "[server]\nname = \"a\"\n[\"site\"]\n"},
		{"many shallow tables", strings.Repeat("[[site]]\nroot = \"www\"\nindex = [\"a.html\", \"b.html\"]\n", 500)},
		{"float values", "[cluster]\nmargin = 0.1\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(writeConfig(t, tc.src))
			if err != nil && strings.Contains(err.Error(), "refused before decoding") {
				t.Fatalf("refused: %v", err)
			}
		})
	}
	// 31 nested arrays under a one-part key: the deepest allowed.
	src := "[server]\ntrusted_proxies = " + strings.Repeat("[", 30) + strings.Repeat("]", 30) + "\n"
	if _, err := config.Load(writeConfig(t, src)); err != nil && strings.Contains(err.Error(), "refused before decoding") {
		t.Fatalf("depth 32 refused: %v", err)
	}
	src = "[server]\ntrusted_proxies = " + strings.Repeat("[", 31) + strings.Repeat("]", 31) + "\n"
	if _, err := config.Load(writeConfig(t, src)); err == nil || !strings.Contains(err.Error(), "refused before decoding") {
		t.Fatalf("depth 33 accepted: %v", err)
	}
}
