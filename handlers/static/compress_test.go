package static

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCompressorMiddleware(t *testing.T) {
	long := strings.Repeat("<p>hello shoal</p>\n", 100)
	tests := []struct {
		name     string
		ae       string
		ctype    string
		body     string
		clen     bool
		status   int
		wantEnc  string
		streamed bool
	}{
		{name: "html zstd", ae: "zstd, gzip", ctype: "text/html; charset=utf-8", body: long, wantEnc: "zstd"},
		{name: "html gzip", ae: "gzip", ctype: "text/html", body: long, wantEnc: "gzip"},
		{name: "no accept", ae: "", ctype: "text/html", body: long, wantEnc: ""},
		{name: "image", ae: "gzip", ctype: "image/png", body: long, wantEnc: ""},
		{name: "small with length", ae: "gzip", ctype: "text/html", body: "hi", clen: true, wantEnc: ""},
		{name: "sniffed type", ae: "gzip", ctype: "", body: long, wantEnc: "gzip"},
		{name: "304", ae: "gzip", ctype: "text/html", status: 304, wantEnc: ""},
		{name: "streamed with flushes", ae: "gzip", ctype: "text/plain", body: long, wantEnc: "gzip", streamed: true},
	}
	c := &Compressor{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				if tc.clen {
					w.Header().Set("Content-Length", "2")
				}
				if tc.status != 0 {
					w.WriteHeader(tc.status)
					return
				}
				if tc.streamed {
					for _, line := range strings.SplitAfter(tc.body, "\n") {
						io.WriteString(w, line)
						http.NewResponseController(w).Flush()
					}
					return
				}
				io.WriteString(w, tc.body)
			}))
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			if tc.ae != "" {
				req.Header.Set("Accept-Encoding", tc.ae)
			}
			resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if got := resp.Header.Get("Content-Encoding"); got != tc.wantEnc {
				t.Fatalf("Content-Encoding %q, want %q", got, tc.wantEnc)
			}
			if tc.status != 0 {
				return
			}
			if got := decode(t, tc.wantEnc, string(raw), false); got != tc.body {
				t.Errorf("body after decoding differs (%d bytes, want %d)", len(got), len(tc.body))
			}
			if tc.wantEnc != "" && !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
				t.Error("no Vary")
			}
		})
	}
}
