package server

import (
	"net"
	"strings"
)

// servingMessage is the line a person starting shoal reads first: where
// to point a browser, `serving http://localhost:8080, https://localhost:8443,
// admin http://127.0.0.1:9180`, from the addresses the listeners bound.
func servingMessage(addrs map[string]string) string {
	var parts []string
	for _, l := range []struct{ role, scheme, label string }{
		{"http", "http", ""}, {"https", "https", ""}, {"admin", "http", "admin "},
	} {
		if a, ok := addrs[l.role]; ok {
			parts = append(parts, l.label+l.scheme+"://"+browsable(a))
		}
	}
	if len(parts) == 0 {
		return "serving (no listener)"
	}
	return "serving " + strings.Join(parts, ", ")
}

// browsable turns a bound address into one a browser on this machine can
// open: a wildcard host becomes localhost.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
