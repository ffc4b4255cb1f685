package config

import (
	"strings"
	"testing"
)

// FuzzCheckNesting: the nesting scan ends on any input without a panic,
// never refuses a file whose every line is a comment, and always refuses
// one that ends in an array nested past the limit on a line of its own
// after a complete table header.
func FuzzCheckNesting(f *testing.F) {
	for _, seed := range []string{
		"[server]\nhttp = \":8080\"\n",
		"[[site]]\nheaders = {A = \"b\"}\n[[site.cgi]]\next = [\".php\"]\n",
		"a = '''x\n[[[\n'''\nb = \"\\\"[\"\n",
		"x = [{a.b = [1.5, {c = 2}]}]\n",
		"[a.\"b.c\".d]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		_ = checkNesting("f.toml", src)
		commented := "#" + strings.ReplaceAll(strings.ReplaceAll(src, "\r", " "), "\n", "\n#")
		if err := checkNesting("f.toml", commented); err != nil {
			t.Fatalf("a file of comments refused: %v", err)
		}
		deep := commented + "\n[t]\nx = " + strings.Repeat("[", maxConfigDepth) + strings.Repeat("]", maxConfigDepth) + "\n"
		if err := checkNesting("f.toml", deep); err == nil {
			t.Fatal("nesting past the limit accepted")
		}
	})
}
