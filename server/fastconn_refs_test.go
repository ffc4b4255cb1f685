package server

import (
	goruntime "runtime"
	"testing"
	"time"

	"shoal/internal/http1"
)

// A fast answer holds its runtime until it is out, so a reload that
// retires the runtime meanwhile closes it only after the answer (its
// access-log line included); a declined request holds nothing.
func TestFastAnswerHoldsRuntime(t *testing.T) {
	n, _ := startBooksNode(t, false)
	rt := n.state.Load()
	base := rt.refs.Load()
	head := func(target string) http1.Head {
		h, ok := http1.ParseHead([]byte("GET " + target + " HTTP/1.1\r\nHost: books.test\r\n\r\n"))
		if !ok {
			t.Fatalf("parse %s", target)
		}
		return h
	}
	booksResponse(t, n, "h1-fast", "GET", "/index.html", nil, "") // cache the file
	// That answer lets go of the runtime just after its last byte left.
	for deadline := time.Now().Add(5 * time.Second); rt.refs.Load() != base; {
		if time.Now().After(deadline) {
			t.Fatalf("refs %d after the first request, want %d", rt.refs.Load(), base)
		}
		goruntime.Gosched()
	}
	a := n.routeFast(head("/index.html"), "http", "127.0.0.1:1")
	if !a.ok() {
		t.Fatal("/index.html not answered by the fast path")
	}
	if got := rt.refs.Load(); got != base+1 {
		t.Fatalf("refs %d while the answer is out, want %d", got, base+1)
	}
	a.done()
	a.done() // idempotent
	if got := rt.refs.Load(); got != base {
		t.Fatalf("refs %d after done, want %d", got, base)
	}
	if d := n.routeFast(head("/cgi-bin/ok.sh"), "http", "127.0.0.1:1"); d.ok() || rt.refs.Load() != base {
		t.Fatalf("a declined request holds the runtime: refs %d, want %d", rt.refs.Load(), base)
	}
}
