package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"shoal/handlers/admin"
)

// The `shoal members` client: it asks a node's admin listener for
// /api/cluster and prints the table.

// printMembers asks the admin listener at addr for the cluster and prints
// it as a table, one member a line, name first.
func printMembers(ctx context.Context, addr string, w io.Writer) error {
	status, err := fetchCluster(ctx, http.DefaultClient, addr)
	if err != nil {
		return err
	}
	formatMembers(w, status.Members)
	return nil
}

// formatMembers writes the `shoal members` table: one member a line, name
// first, in natural name order (n2 before n10), columns aligned, like
// `consul members`. Drift names the sites whose hash differs from the
// answering node's ("-": none).
func formatMembers(w io.Writer, members []admin.Member) {
	members = slices.Clone(members)
	slices.SortStableFunc(members, func(a, b admin.Member) int { return admin.NaturalCompare(a.Name, b.Name) })
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

// fetchCluster reads /api/cluster from the admin listener at base (such as
// "http://127.0.0.1:9180"), for `shoal members`. client nil means
// http.DefaultClient; give ctx a deadline.
func fetchCluster(ctx context.Context, client *http.Client, base string) (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
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
