package server

import "testing"

func TestServingMessage(t *testing.T) {
	cases := []struct {
		addrs map[string]string
		want  string
	}{
		{map[string]string{"http": "[::]:8080", "admin": "127.0.0.1:9180"}, "serving http://localhost:8080, admin http://127.0.0.1:9180"},
		{map[string]string{"http": "0.0.0.0:80", "https": "[::]:443", "admin": "127.0.0.1:9180"}, "serving http://localhost:80, https://localhost:443, admin http://127.0.0.1:9180"},
		{map[string]string{"https": "192.0.2.1:8443"}, "serving https://192.0.2.1:8443"},
		{map[string]string{"http": "[::1]:8080"}, "serving http://[::1]:8080"},
		{map[string]string{}, "serving (no listener)"},
	}
	for _, tc := range cases {
		if got := servingMessage(tc.addrs); got != tc.want {
			t.Errorf("servingMessage(%v) = %q, want %q", tc.addrs, got, tc.want)
		}
	}
}
