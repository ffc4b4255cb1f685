package handlers

import (
	"bytes"
	"slices"
	"strings"
	"testing"
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
		if got := NaturalCompare(tc.a, tc.b); got != tc.want {
			t.Errorf("NaturalCompare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestFormatMembersNaturalOrder(t *testing.T) {
	var ms []Member
	for _, n := range []string{"n10", "n1", "n2", "n11", "n3"} {
		ms = append(ms, Member{Name: n, State: StateAlive, Capacity: 1})
	}
	var buf bytes.Buffer
	FormatMembers(&buf, ms)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n")[1:] {
		got = append(got, strings.Fields(line)[0])
	}
	if want := []string{"n1", "n2", "n3", "n10", "n11"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if ms[0].Name != "n10" {
		t.Error("FormatMembers reordered the caller's slice")
	}
}
