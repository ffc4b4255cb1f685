package server

import (
	"strings"
	"testing"
)

func TestRequestIDRules(t *testing.T) {
	ids := newRequestIDs()
	tests := []struct {
		sent    string
		trusted bool
		kept    bool
	}{
		{"abc-123", true, true},
		{"abc-123", false, false}, // a client's own ID is replaced
		{"", true, false},
		{"has space", true, false},
		{strings.Repeat("x", 129), true, false},
	}
	for _, tt := range tests {
		got := ids.requestID(tt.sent, tt.trusted)
		if (got == tt.sent) != tt.kept || got == "" {
			t.Errorf("requestID(%q, %v) = %q, kept %v", tt.sent, tt.trusted, got, tt.kept)
		}
	}
	if a, b := ids.next(), ids.next(); a == b || !strings.HasPrefix(b, ids.prefix) {
		t.Errorf("fresh IDs %q, %q", a, b)
	}
}

// CGI gets the request's ID as HTTP_X_REQUEST_ID: the one a trusted proxy
// sent (the books node trusts 127.0.0.1), else a fresh one.
func TestRequestIDToCGI(t *testing.T) {
	n, _ := startBooksNodeWith(t, false, map[string]string{
		"cgi-bin/id.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nid=%s\\n' \"$HTTP_X_REQUEST_ID\"\n",
	}, "")
	for _, path := range booksPaths {
		got := booksResponse(t, n, path, "GET", "/cgi-bin/id.sh", []string{"X-Request-Id", "from-proxy-1"}, "")
		if got.body != "id=from-proxy-1\n" {
			t.Errorf("%s: trusted ID: %q", path, got.body)
		}
		got = booksResponse(t, n, path, "GET", "/cgi-bin/id.sh", nil, "")
		if !strings.HasPrefix(got.body, "id="+n.ids.prefix) {
			t.Errorf("%s: fresh ID: %q, want prefix %q", path, got.body, n.ids.prefix)
		}
	}
}
