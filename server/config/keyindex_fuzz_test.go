package config

import (
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// FuzzIndexKeys: on any document toml accepts (the only ones decode hands
// it), the key scanner ends without a panic, every place it records is
// inside the document, and it finds every top-level key toml reports, at
// a place where that key is written.
func FuzzIndexKeys(f *testing.F) {
	for _, seed := range []string{
		"[server]\nhttp = \":8080\"\n",
		"[[site]]\nroot = \"www\"\nheaders = {X-A = \"b\"}\n[[site.route]]\npath = \"/x\"\n",
		"a.b.c = 1\n\"q.k\" = 2\n[t]\n'lit' = 3\n",
		"x = [1, 2, {y = 3}]\ns = \"\"\"\nmulti\n\"\"\"\n",
		"# comment\n[[upstream]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:1\"]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		var doc map[string]any
		md, err := toml.Decode(src, &doc)
		if err != nil {
			return
		}
		ki := indexKeys(src)
		lines := strings.Split(src, "\n")
		for key, p := range ki.pos {
			if p.Line < 1 || p.Line > len(lines) || p.Col < 1 || p.Col > len(lines[p.Line-1])+1 {
				t.Fatalf("key %q at %d:%d: outside the document", key, p.Line, p.Col)
			}
		}
		for _, k := range md.Keys() {
			if len(k) != 1 || !bareKey.MatchString(k[0]) {
				continue
			}
			p, ok := ki.lookup(k[0])
			if !ok {
				t.Fatalf("top-level key %q not indexed", k[0])
			}
			if line := lines[p.Line-1]; !strings.Contains(line[p.Col-1:], k[0]) {
				t.Fatalf("key %q placed at %d:%d, where line %q does not name it", k[0], p.Line, p.Col, line)
			}
		}
	})
}
