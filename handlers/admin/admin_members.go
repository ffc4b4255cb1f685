package admin

import (
	"cmp"
	"strings"
)

// NaturalCompare orders names as people number nodes: runs of digits by
// their value, so n2 sorts before n10; the rest byte by byte. Names that
// differ only in leading zeros fall back to byte order, so the order is
// total.
func NaturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if isDigit(a[i]) && isDigit(b[j]) {
			ei, ej := digitsEnd(a, i), digitsEnd(b, j)
			na := strings.TrimLeft(a[i:ei], "0")
			nb := strings.TrimLeft(b[j:ej], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			i, j = ei, ej
			continue
		}
		if c := cmp.Compare(a[i], b[j]); c != 0 {
			return c
		}
		i++
		j++
	}
	if c := cmp.Compare(len(a)-i, len(b)-j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitsEnd(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// SoloView is the ClusterView of a node running without a cluster: the
// function describes the node, which is the only member.
type SoloView func() Member

func (f SoloView) Self() string      { return f().Name }
func (f SoloView) Members() []Member { return []Member{f()} }
