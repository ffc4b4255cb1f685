package server

import (
	"context"
	"io"
	"net/http"
	"strings"

	"shoal/handlers"
)

// PrintMembers asks the admin listener at addr for the cluster and prints
// it as a table, one member a line, name first (`shoal members`).
func PrintMembers(ctx context.Context, addr string, w io.Writer) error {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	status, err := handlers.FetchCluster(ctx, http.DefaultClient, base)
	if err != nil {
		return err
	}
	handlers.FormatMembers(w, status.Members)
	return nil
}
