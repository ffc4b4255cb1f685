package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"shoal/handlers/admin"
)

// TestAdminCertificates: /api/certificates lists what Certificates
// returns with the contract's field names, an empty list without it, and
// the status page shows each certificate with its expiry.
func TestAdminCertificates(t *testing.T) {
	exp := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		certs func() []admin.Certificate
		want  string
	}{
		{"none", nil, `{"certificates":[]}`},
		{"acme", func() []admin.Certificate {
			return []admin.Certificate{{Names: []string{"a.test"}, Issuer: "Pebble Intermediate", NotAfter: exp,
				Source: "acme", OrderedBy: "node-b", Serial: "1f"}}
		}, `{"certificates":[{"names":["a.test"],"issuer":"Pebble Intermediate","not_after":"2027-03-01T12:00:00Z","source":"acme","ordered_by":"node-b","serial":"1f"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := (&admin.Server{Certificates: tc.certs}).Handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/api/certificates", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			var got, want any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			json.Unmarshal([]byte(tc.want), &want)
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if string(gb) != string(wb) {
				t.Errorf("body %s, want %s", rec.Body.String(), tc.want)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil))
			if tc.certs != nil && !strings.Contains(rec.Body.String(), "2027-03-01") {
				t.Errorf("status page does not show the expiry")
			}
		})
	}
}
