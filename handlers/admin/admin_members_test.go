package admin_test

import (
	"testing"

	"shoal/handlers/admin"
)

func TestNaturalCompare(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"n2", "n10", -1},
		{"n10", "n2", 1},
		{"n2", "n2", 0},
		{"node-9", "node-10", -1},
		{"a", "b", -1},
		{"n", "n1", -1},
		{"n01", "n1", -1}, // same number: byte order keeps it total
		{"n1a", "n1b", -1},
		{"web2.example", "web10.example", -1},
		{"n99999999999999999999", "n100000000000000000000", -1}, // beyond int64
	}
	for _, tc := range cases {
		if got := admin.NaturalCompare(tc.a, tc.b); got != tc.want {
			t.Errorf("NaturalCompare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
