package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
)

// FormatMembers writes the `shoal members` table: one member a line, name
// first, columns aligned, like `consul members`.
func FormatMembers(w io.Writer, members []Member) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Name\tState\tLoad\tIn-flight\tAddress\tConfig\tDraining")
	for _, m := range members {
		addr := m.PeerURL
		if addr == "" {
			addr = m.PublicURL
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d/%d\t%s\t%s\t%s\n",
			cell(m.Name), cell(m.State), m.Load, m.Inflight, m.Capacity,
			cell(addr), cell(m.Config), yesNo(m.Draining))
	}
	tw.Flush()
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
