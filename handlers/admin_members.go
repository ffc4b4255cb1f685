package handlers

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
)

// FormatMembers writes the `shoal members` table: one member a line, name
// first, in natural name order (n2 before n10), columns aligned, like
// `consul members`. Drift names the sites whose hash differs from the
// answering node's ("-": none).
func FormatMembers(w io.Writer, members []Member) {
	members = slices.Clone(members)
	slices.SortStableFunc(members, func(a, b Member) int { return NaturalCompare(a.Name, b.Name) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Name\tState\tLoad\tIn-flight\tAddress\tConfig\tDrift\tDraining")
	for _, m := range members {
		addr := m.PeerURL
		if addr == "" {
			addr = m.PublicURL
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d/%d\t%s\t%s\t%s\t%s\n",
			cell(m.Name), cell(m.State), m.Load, m.Inflight, m.Capacity,
			cell(addr), cell(m.Config), cell(strings.Join(m.Drift, ",")), yesNo(m.Draining))
	}
	tw.Flush()
}

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

// cell keeps a value from another node on one table cell: no tabs,
// newlines or terminal control characters.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// FetchCluster reads /api/cluster from the admin listener at base (such as
// "http://127.0.0.1:9180"), for `shoal members`. client nil means
// http.DefaultClient; give ctx a deadline.
func FetchCluster(ctx context.Context, client *http.Client, base string) (ClusterStatus, error) {
	var st ClusterStatus
	if client == nil {
		client = http.DefaultClient
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/cluster", nil)
	if err != nil {
		return st, fmt.Errorf("members: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return st, fmt.Errorf("members: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("members: %s answered %s", req.URL, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("members: decoding %s: %w", req.URL, err)
	}
	return st, nil
}

// SoloView is the ClusterView of a node running without a cluster: the
// function describes the node, which is the only member.
type SoloView func() Member

func (f SoloView) Self() string      { return f().Name }
func (f SoloView) Members() []Member { return []Member{f()} }
