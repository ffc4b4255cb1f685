package route

import "testing"

// BenchmarkPlain is the fast paths' question for a file under a site of
// ten routes where one headers route matches: no allocation.
func BenchmarkPlain(b *testing.B) {
	tbl, errs := Compile(realisticRoutes(), Options{Scope: "bench"})
	if errs != nil {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if key, ok := tbl.Plain("GET", "http", "/assets/app.3f9c2b.js"); !ok || key == 0 {
			b.Fatal(key, ok)
		}
	}
}
